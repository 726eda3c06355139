"""Keras 3 with the JAX backend (``KERAS_BACKEND=jax``; TensorFlow not needed).

The state lives in the optimizer's variables (``_keras3_native``), so Keras
threads it through the jitted, stateless training step. The sync runs inside that
step in a while loop of 0 or 1 trips on the traced counter, so a step that does
not sync runs no per-weight work and copies nothing (see ``_when``).

The start (the slow copies, at the first step and when a weight joins) is known in
Python, so it is taken outside the step: the train function is wrapped, and a call
that starts first puts copies of the weights into the state it hands on. Inside
the step a start would keep the weights as they were before the update, which
costs a copy of every weight at every step (XLA copies a while loop's operands that
the update then overwrites; 3.2 MB per step of the 1.3 M-parameter MLP). An
``apply`` outside the wrapped train function (a loop of the user's own) takes the
start in the step, from the counter.
"""

import jax
import jax.numpy as jnp
import numpy as np
from keras import ops

from . import _keras3_files, _keras3_native
from ._keras3_native import START_ALL, START_JOINING, START_NONE

#: Lookahead under keras.distribution (DataParallel): the packed slow weights are laid
#: out as the distribution lays out the optimizer's variables (on every device, like the
#: weights) and updated in the same jitted step.
DISTRIBUTE = True

#: Files that carry the Lookahead state by themselves (in a section of their own, beside
#: the optimizer's: _keras3_files).
CHECKPOINT_FORMATS = (".keras (model.save, ModelCheckpoint)",
                      ".weights.h5 (save_weights, ModelCheckpoint, BackupAndRestore)")


def check(model):
    _keras3_native.check(model)


def attach(model, k, alpha, optimizer_state="keep"):
    return _keras3_files.install(
        model, _keras3_native.attach(model, k, alpha, optimizer_state, _Jax))


class _Jax(object):

    #: The slow copies live in one array per dtype (``_keras3_native.Segment``): each
    #: array of the jitted step's state costs its dispatch.
    PACKED = True

    @staticmethod
    def sync_state(model):
        # During fit the values live in the trainer's state, not in the variables
        # (JAXTrainer purges them); Keras' own callbacks ask for them this way.
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()

    @staticmethod
    def written(lookahead):
        step, joining = lookahead.read([lookahead.step, lookahead.joining_flag])
        lookahead.host_start = (START_ALL if int(step) == 0 else
                                START_JOINING if int(joining) else START_NONE)

    @staticmethod
    def hook_model(model, lookahead, undo):
        _Jax.written(lookahead)
        lookahead.in_train_function = False
        original = model.make_train_function

        def make_train_function(force=False):
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
    def retrace(model):
        model.train_function = None

    @staticmethod
    def wrap_step(apply):
        return apply

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        weights, slow, momentum, slots, step, joining = lookahead.variables_in_step()
        packed, count = lookahead.packed, step.value
        if lookahead.in_train_function:
            # The wrapped train function took the start before this step.
            packed_values = [array.value for array in packed]
        else:
            packed_values = _start_in_step(lookahead, weights, count, joining)
        counted = optimizer.gradient_accumulation_steps
        updates_before = ops.convert_to_tensor(optimizer.iterations) if counted else None
        result = original_apply(grads, trainable_variables)
        # With gradient_accumulation_steps, a call that only accumulates leaves
        # `iterations` (updates, not calls) unchanged: not a Lookahead step.
        applied = (ops.cast(ops.not_equal(optimizer.iterations, updates_before), "int32")
                   if counted else 1)
        sync = ops.logical_and(ops.equal(applied, 1),
                               ops.equal(ops.mod(count + 1, lookahead.k), 0))

        def pull_together(values):
            fast, packed_now, momentum_values, slot_values = values
            fast, packed_now = lookahead.pulled_packed(fast, packed_now)
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


def _starting(model, lookahead, train_function):
    """``train_function`` that first takes a pending start into the state it is given."""
    def train_function_taking_start(state, data):
        if lookahead.host_start != START_NONE:
            state = _started(model, lookahead, state)
            lookahead.host_start = START_NONE
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
    joined = lookahead._joining if lookahead.host_start == START_JOINING else None
    starting = [w for w in lookahead.trained if joined is None or id(w) in joined]
    # A weight that is not the model's (trained by a custom train_step) is not in the
    # state, and fit does not purge its value.
    values = [weights[id(w)] if id(w) in weights else w.value for w in starting]
    packed_values = [optimizer_values[position[id(array)]] for array in lookahead.packed]
    for array, value in zip(lookahead.packed,
                            lookahead.repacked(packed_values, starting, values)):
        optimizer_values[position[id(array)]] = value
    joining = position[id(lookahead.joining_flag)]
    optimizer_values[joining] = jnp.zeros_like(optimizer_values[joining])
    return trainable, non_trainable, optimizer_values, metrics


def _start_in_step(lookahead, weights, count, joining):
    """The start inside the (traced) step, chosen by the counter and the joining flag:
    the packed slow values for the update. A start copies the weights as they are
    before the update (a copy kept for after it could not be updated in place)."""
    start = ops.where(ops.equal(count, 0), START_ALL,
                      ops.where(ops.greater(joining.value, 0), START_JOINING, START_NONE))
    before = [w.value for w in weights]
    starts = [lookahead.branch(START_JOINING, 0), lookahead.branch(START_ALL, 0)]

    def take(packed_values):
        slow_values = jax.lax.switch(
            ops.cast(start - 1, "int32"),
            [lambda operands, run=run: run(operands)[1] for run in starts],
            (before, before, lookahead.unpacked(packed_values), [], []))
        return lookahead.repacked(packed_values, lookahead.trained, slow_values)

    packed_values = _when(ops.not_equal(start, START_NONE), take,
                          [array.value for array in lookahead.packed])
    joining.assign(ops.where(ops.equal(start, START_NONE), joining.value, 0))
    # This loop took the pending start (if the wrapped train function runs later).
    lookahead.host_start = START_NONE
    return packed_values


def _when(flag, run, values):
    """``run(values)`` if the traced ``flag`` is true, else ``values``, as a while loop of
    0 or 1 trips. XLA keeps a loop's carried values in place; a conditional (lax.cond,
    lax.switch) writes its results to new buffers, so its branch that passes the weights
    through copied all of them at every step that does not sync (measured with jax 0.10
    on CPU: 1.3 M parameters, ~10 MB of copies per step)."""
    def once(carry):
        return jnp.zeros((), bool), run(carry[1])
    return jax.lax.while_loop(lambda carry: carry[0], once,
                              (jnp.asarray(flag, bool), values))[1]
