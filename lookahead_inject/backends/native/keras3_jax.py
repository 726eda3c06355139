"""Keras 3 with the JAX backend (``KERAS_BACKEND=jax``; TensorFlow not needed).

The state lives in the optimizer's variables (``_optimizer_variables``), so Keras
threads it through the jitted, stateless training step. The sync runs inside that
step in a while loop of 0 or 1 trips on the traced counter, so a step that does
not sync runs no per-weight work and copies nothing (see ``_when``).

The start (the slow copies of the pending weights) is taken outside the step in
fit and train_on_batch: the train function is wrapped, and a call that starts first
puts copies of the weights into the state it hands on (inside the step a start costs
a copy of every weight at every step: benchmarks/RESULTS.md, "Design notes from
measurements"). Which weights are pending is read from the variables once per fit /
train_on_batch call, when it makes its train function: only a step whose results
became the variables' values counts. An
``apply`` outside the wrapped train function (a loop of the user's own, which may be
traced and its results kept or not) takes the start in the step, from the counter
and the flags.
"""

import jax
import jax.numpy as jnp
import numpy as np
from keras import ops

from . import _optimizer_variables


class _Jax(_optimizer_variables.Platform):

    #: The slow copies of 8 weights share an array (``_optimizer_variables.Segment``): each
    #: array of the jitted step's state costs its dispatch, each copy in one array adds to
    #: XLA's compile of the sync (benchmarks/jax_sync_compile.py, issue #22).
    PACKED = 8
    #: A weight of 16K elements or more has an array of its own. A packed array's sync
    #: writes it in one pass over its weights laid end to end, which on XLA's CPU backend
    #: ran as fast as a pass per weight for small weights and up to 100x slower for an
    #: array of megabytes (the 1.3 M-parameter MLP's); one more array's dispatch is nothing
    #: beside a weight that size (benchmarks/jax_sync_compile.py).
    ALONE = 1 << 14

    @staticmethod
    def sync_state(model):
        # During fit the values live in the trainer's state, not in the variables
        # (JAXTrainer purges them); Keras' own callbacks ask for them this way.
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()

    @staticmethod
    def written(lookahead):
        step, pending = lookahead.read([lookahead.step, lookahead.pending])
        lookahead.host_waiting = lookahead.waiting(step, pending)

    @staticmethod
    def hook_model(model, lookahead, undo):
        _Jax.written(lookahead)
        lookahead.in_train_function = False
        original = model.make_train_function

        def make_train_function(force=False):
            # fit and train_on_batch call this first: a loop of the user's own since the
            # last call may have written the counter and the flags back, or not.
            _Jax.written(lookahead)
            result = original(force)
            function = model.train_function
            if function is not None and not getattr(function, "takes_lookahead_start", False):
                model.train_function = _starting(model, lookahead, function)
            return result

        make_train_function.__doc__ = original.__doc__
        undo.set_attribute(model, "make_train_function", make_train_function)

    @staticmethod
    def to_numpy(array):
        return np.array(array)

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        weights, slow, momentum, slots, step, pending = lookahead.variables_in_step(
            None if trainable_variables is None else list(trainable_variables))
        packed, count = lookahead.packed, step.value
        if lookahead.in_train_function:
            # The wrapped train function took the start before this step.
            packed_values = [array.value for array in packed]
        else:
            packed_values = _start_in_step(lookahead, weights, count, pending)
        applied = _optimizer_variables.update_applied(optimizer)
        result = original_apply(grads, trainable_variables)
        applied = applied()
        sync = ops.logical_and(ops.equal(applied, 1),
                               ops.equal(ops.mod(count + 1, lookahead.k), 0))

        def pull_together(values):
            fast, packed_now, momentum_values, slot_values = values
            fast, packed_now = lookahead.pulled_packed(weights, fast, packed_now)
            momentum_values, slot_values = lookahead.synced_slots(momentum_values, slot_values)
            return fast, packed_now, momentum_values, slot_values

        synced = _when(sync, pull_together,
                       ([w.value for w in weights], packed_values,
                        [v.value for v in momentum], [v.value for v in slots]))
        for variables, values in zip((weights, packed, momentum, slots), synced):
            for variable, value in zip(variables, values):
                variable.assign(value)
        step.assign(count + applied)
        return result


#: Lookahead under keras.distribution (DataParallel): the packed slow weights are laid
#: out as the distribution lays out the optimizer's variables (on every device, like the
#: weights) and updated in the same jitted step.
BACKEND = _optimizer_variables.backend(_Jax, distribute=True)


def _starting(model, lookahead, train_function):
    """``train_function`` that first takes a pending start into the state it is given."""
    def train_function_taking_start(state, data):
        if lookahead.host_waiting:
            state = _started(model, lookahead, state)
            lookahead.host_waiting = frozenset()
        lookahead.in_train_function = True
        try:
            return train_function(state, data)
        finally:
            lookahead.in_train_function = False
    train_function_taking_start.takes_lookahead_start = True
    return train_function_taking_start


def _started(model, lookahead, state):
    """The trainer's ``state`` (trainable, non-trainable, optimizer and metrics values, in
    the order of the model's and the optimizer's variables) with the slow copies taken."""
    trainable, non_trainable, optimizer_values, metrics = state
    weights = {}
    for variables, values in ((model.trainable_variables, trainable),
                              (model.non_trainable_variables, non_trainable)):
        weights.update((id(v), value) for v, value in zip(variables, values))
    position = dict((id(v), i) for i, v in enumerate(model.optimizer.variables))
    optimizer_values = list(optimizer_values)
    starting = [w for w in lookahead.trained if id(w) in lookahead.host_waiting]
    # A weight that is not the model's (trained by a custom train_step) is not in the
    # state, and fit does not purge its value.
    # Copies: a weight alone in its array (_Jax.ALONE) would otherwise be that array's
    # value too, one buffer the train function is handed (and donated) twice.
    values = [jnp.array(weights[id(w)] if id(w) in weights else w.value, copy=True)
              for w in starting]
    packed_values = [optimizer_values[position[id(array)]] for array in lookahead.packed]
    for array, value in zip(lookahead.packed,
                            lookahead.repacked(packed_values, starting, values)):
        optimizer_values[position[id(array)]] = value
    flags = position[id(lookahead.pending)]
    optimizer_values[flags] = jnp.zeros_like(optimizer_values[flags])
    return trainable, non_trainable, optimizer_values, metrics


def _start_in_step(lookahead, weights, count, pending):
    """The start inside the (traced) step, chosen by the counter and the flags: the
    packed slow values for the update, the slow copies of the pending ``weights``
    taken. A start copies the weights as they are before the update (a copy kept for
    after it could not be updated in place)."""
    taking, pending_after = lookahead.taking_in_step(weights, count)
    before = [w.value for w in weights]

    def take(packed_values):
        segments = [lookahead.slow_for(w) for w in weights]
        slow_values = [ops.where(ops.greater(flag, 0), value, s.of(packed_values[s.position]))
                       for flag, value, s in zip(ops.unstack(taking), before, segments)]
        return lookahead.repacked(packed_values, weights, slow_values)

    packed_values = _when(ops.any(ops.greater(taking, 0)), take,
                          [array.value for array in lookahead.packed])
    pending.assign(pending_after)
    return packed_values


def _when(flag, run, values):
    """``run(values)`` if the traced ``flag`` is true, else ``values``, as a while loop of
    0 or 1 trips: XLA keeps a loop's carried values in place, where a conditional's branch
    that passes the weights through copies them all (benchmarks/RESULTS.md, "Design notes
    from measurements")."""
    try:
        # run_eagerly (and a flag known at trace time): decided here. A while loop built
        # outside jit from this call's fresh closures is traced and compiled again at every
        # step (issue #22: a run_eagerly fit ran ~9x slower than plain).
        chosen = bool(flag)
    except jax.errors.ConcretizationTypeError:
        def once(carry):
            return jnp.zeros((), bool), run(carry[1])
        return jax.lax.while_loop(lambda carry: carry[0], once,
                                  (jnp.asarray(flag, bool), values))[1]
    return run(values) if chosen else values
