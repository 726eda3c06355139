"""Keras 3 with the JAX backend (``KERAS_BACKEND=jax``; TensorFlow not needed).

The state lives in the optimizer's variables (``_keras3_native``), so Keras
threads it through the jitted, stateless training step. The step's two pieces of
Lookahead work (a start taking the slow copies, before the update; the sync, after
it) each sit in a while loop of 0 or 1 trips on the traced counter, so a step that
does neither runs no per-weight work and copies nothing (see ``_when``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from keras import ops

from . import _keras3_native
from ._keras3_native import START_ALL, START_JOINING, START_NONE

#: Lookahead under keras.distribution (DataParallel): the slow weights are laid out
#: like their weights (add_variable_from_reference) and updated in the same jitted step.
DISTRIBUTE = True

#: Files that carry the Lookahead state by themselves: none (.keras and .weights.h5
#: carry the optimizer's own state without it; la.save carries it).
CHECKPOINT_FORMATS = ()


def check(model):
    _keras3_native.check(model)


def attach(model, k, alpha, optimizer_state="keep"):
    return _keras3_native.attach(model, k, alpha, optimizer_state, _Jax)


class _Jax(object):

    @staticmethod
    def sync_state(model):
        # During fit the values live in the trainer's state, not in the variables
        # (JAXTrainer purges them); Keras' own callbacks ask for them this way.
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()

    @staticmethod
    def written(lookahead):
        pass

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
        count = step.value
        start = ops.where(ops.equal(count, 0), START_ALL,
                          ops.where(ops.greater(joining.value, 0), START_JOINING, START_NONE))
        # A start copies the weights as they are before this update: before it, so the
        # update can still write the weights in place (a copy kept for after it could not).
        before = [w.value for w in weights]
        takes = [lookahead.branch(START_JOINING, 0), lookahead.branch(START_ALL, 0)]
        slow_values = _when(
            ops.not_equal(start, START_NONE),
            lambda values: jax.lax.switch(
                ops.cast(start - 1, "int32"),
                [lambda operands, take=take: take(operands)[1] for take in takes],
                (before, before, values, [], [])),
            [v.value for v in slow])
        for variable, value in zip(slow, slow_values):
            variable.assign(value)
        counted = optimizer.gradient_accumulation_steps
        updates_before = ops.convert_to_tensor(optimizer.iterations) if counted else None
        result = original_apply(grads, trainable_variables)
        # With gradient_accumulation_steps, a call that only accumulates leaves
        # `iterations` (updates, not calls) unchanged: not a Lookahead step.
        applied = (ops.cast(ops.not_equal(optimizer.iterations, updates_before), "int32")
                   if counted else 1)
        sync = ops.logical_and(ops.equal(applied, 1),
                               ops.equal(ops.mod(count + 1, lookahead.k), 0))
        pull = lookahead.branch(START_NONE, 1)
        synced = _when(sync, lambda values: tuple(pull((values[0],) + values)),
                       ([w.value for w in weights], slow_values,
                        [v.value for v in momentum], [v.value for v in slots]))
        for variables, values in zip((weights, slow, momentum, slots), synced):
            for variable, value in zip(variables, values):
                variable.assign(value)
        step.assign(count + applied)
        joining.assign(ops.where(ops.equal(start, START_NONE), joining.value, 0))
        return result


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
