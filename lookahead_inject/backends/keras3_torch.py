"""Keras 3 with the PyTorch backend (``KERAS_BACKEND=torch``; TensorFlow not needed).

The state lives in the optimizer's variables (``_keras3_native``) like on JAX.
PyTorch runs the step eagerly, so the branch is chosen in Python from host-side
copies of the step counter and the joining flag (kept in step with the variables
at every write): no device-to-host read per step, and the steps that do not sync
run nothing per weight. ``jit_compile=True`` (Keras: ``torch.compile`` of the
train step) compiles the forward and backward passes; the optimizer's apply with
the Lookahead sync runs eagerly (``torch.compiler.disable``), where Python can choose.
"""

import torch
from keras import ops

from . import _keras3_native
from ._keras3_native import START_ALL, START_JOINING, START_NONE

#: No torch.distributed support is tested: one process only (README "Keras 3 on JAX and PyTorch").
DISTRIBUTE = False

#: Files that carry the Lookahead state by themselves: none (la.save carries it).
CHECKPOINT_FORMATS = ()


def check(model):
    _keras3_native.check(model)


def attach(model, k, alpha, optimizer_state="keep"):
    return _keras3_native.attach(model, k, alpha, optimizer_state, _Torch)


class _Torch(object):

    @staticmethod
    def sync_state(model):
        pass

    @staticmethod
    def written(lookahead):
        step, joining = lookahead.read([lookahead.step, lookahead._holders[_keras3_native.JOINING]])
        lookahead.host = [int(step), int(joining)]

    @staticmethod
    def to_numpy(tensor):
        # Not np.array(tensor) nor keras.ops.convert_to_numpy: with numpy 2, torch 2.13's
        # __array__ (no `copy` argument) warns on every read.
        return tensor.detach().cpu().numpy().copy()

    @staticmethod
    def retrace(model):
        model.train_function = None

    @staticmethod
    def wrap_step(apply):
        disable = getattr(getattr(torch, "compiler", None), "disable", None)
        return disable(apply) if disable is not None else apply

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        weights, slow, momentum, slots, step, joining = lookahead.variables_in_step()
        count, joins = lookahead.host
        start = START_ALL if count == 0 else START_JOINING if joins else START_NONE
        before = [ops.copy(w.value) for w in weights] if start != START_NONE else weights
        counted = optimizer.gradient_accumulation_steps
        updates_before = int(ops.convert_to_numpy(optimizer.iterations)) if counted else None
        result = original_apply(grads, trainable_variables)
        # With gradient_accumulation_steps a call that only accumulates leaves
        # `iterations` (updates) unchanged (this reads the counter: accumulation only).
        applied = (int(ops.convert_to_numpy(optimizer.iterations)) != updates_before
                   if counted else True)
        sync = applied and (count + 1) % lookahead.k == 0
        if start != START_NONE or sync:
            fast, slow_values, momentum_values, slot_values = lookahead.branch(start, sync)(
                (before, [w.value for w in weights], [v.value for v in slow],
                 [v.value for v in momentum], [v.value for v in slots]))
            changed = [(slow, slow_values)]
            if sync:
                changed += [(weights, fast), (momentum, momentum_values), (slots, slot_values)]
            for variables, values in changed:
                for variable, value in zip(variables, values):
                    variable.assign(value)
        if applied:
            count += 1
            step.assign(count)
        if start != START_NONE:
            joins = 0
            joining.assign(0)
        lookahead.host = [count, joins]
        return result
