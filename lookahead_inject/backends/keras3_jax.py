"""Keras 3 with the JAX backend (``KERAS_BACKEND=jax``; TensorFlow not needed).

The state lives in the optimizer's variables (``_keras3_native``), so Keras
threads it through the jitted, stateless training step. The step chooses its
branch with ``lax.switch`` on the traced counter: the branches that do not sync
pass their inputs through, so a step that does not sync runs no per-weight work.
"""

import jax
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
        before = [w.value for w in weights]
        counted = optimizer.gradient_accumulation_steps
        updates_before = ops.convert_to_tensor(optimizer.iterations) if counted else None
        result = original_apply(grads, trainable_variables)
        # With gradient_accumulation_steps, a call that only accumulates leaves
        # `iterations` (updates, not calls) unchanged: not a Lookahead step.
        applied = (ops.cast(ops.not_equal(optimizer.iterations, updates_before), "int32")
                   if counted else 1)
        count = step.value
        start = ops.where(ops.equal(count, 0), START_ALL,
                          ops.where(ops.greater(joining.value, 0), START_JOINING, START_NONE))
        sync = applied * ops.cast(ops.equal(ops.mod(count + 1, lookahead.k), 0), "int32")
        fast, slow_values, momentum_values, slot_values = jax.lax.switch(
            ops.cast(start * 2 + sync, "int32"), lookahead.branches(),
            (before, [w.value for w in weights], [v.value for v in slow],
             [v.value for v in momentum], [v.value for v in slots]))
        for variables, values in ((weights, fast), (slow, slow_values),
                                  (momentum, momentum_values), (slots, slot_values)):
            for variable, value in zip(variables, values):
                variable.assign(value)
        step.assign(count + applied)
        joining.assign(ops.where(ops.equal(start, START_NONE), joining.value, 0))
        return result
