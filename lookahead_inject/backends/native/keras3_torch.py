"""Keras 3 with the PyTorch backend (``KERAS_BACKEND=torch``; TensorFlow not needed).

The state lives in the optimizer's variables (``_optimizer_variables``) like on JAX.
PyTorch runs the step eagerly, so the branch is chosen in Python from host-side
copies of the step counter and the pending flags (kept in step with the variables
at every write): no device-to-host read per step, and the steps that do not sync
run nothing per weight. ``jit_compile=True`` (Keras: ``torch.compile`` of the
train step) compiles the forward and backward passes; the optimizer's apply with
the Lookahead sync runs eagerly (``torch.compiler.disable``), where Python can choose.
The sync itself is done in place (``rule.torch_rule``) on float32 state.
"""

import torch
from keras import ops

from ...rule import PULLBACK, RESET, torch_rule
from . import _optimizer_variables


class _Torch(_optimizer_variables.Platform):

    #: One slow-copy variable per weight: the in-place multi-tensor sync works on them.
    PACKED = 0

    @staticmethod
    def written(lookahead):
        step, pending = lookahead.read([lookahead.step, lookahead.pending])
        lookahead.host_step, lookahead.host_waiting = int(step), lookahead.waiting(step, pending)

    @staticmethod
    def to_numpy(tensor):
        # Not np.array(tensor) nor keras.ops.convert_to_numpy: with numpy 2, torch 2.13's
        # __array__ (no `copy` argument) warns on every read.
        return tensor.detach().cpu().numpy().copy()

    @staticmethod
    def wrap_step(apply):
        disable = getattr(getattr(torch, "compiler", None), "disable", None)
        return disable(apply) if disable is not None else apply

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        # The optimizer may be handed a subset of what it was built on (compiled again
        # after freezing, or a loop that drops the weights without a gradient): only
        # those weights are trained, so only they are synced.
        weights, slow, momentum, slots, step, pending = lookahead.variables_in_step(
            None if trainable_variables is None else list(trainable_variables))
        count, waiting = lookahead.host_step, lookahead.host_waiting
        starting = waiting.intersection(map(id, weights)) if waiting else waiting
        before = ([ops.copy(w.value) if id(w) in starting else None for w in weights]
                  if starting else weights)
        counted = optimizer.gradient_accumulation_steps
        updates_before = int(ops.convert_to_numpy(optimizer.iterations)) if counted else None
        result = original_apply(grads, trainable_variables)
        # With gradient_accumulation_steps a call that only accumulates leaves
        # `iterations` (updates) unchanged (this reads the counter: accumulation only).
        applied = (int(ops.convert_to_numpy(optimizer.iterations)) != updates_before
                   if counted else True)
        sync = applied and (count + 1) % lookahead.k == 0
        in_place = sync and _all_float32(weights, slow, momentum, slots)
        if starting or (sync and not in_place):
            # A start (the slow copies, once), or a sync on other dtypes: the keras.ops rule.
            fast, slow_values, momentum_values, slot_values = lookahead.branch(
                starting, sync and not in_place, weights)(
                (before, [w.value for w in weights], [v.value for v in slow],
                 [v.value for v in momentum], [v.value for v in slots]))
            changed = [(slow, slow_values)]
            if sync and not in_place:
                changed += [(weights, fast), (momentum, momentum_values), (slots, slot_values)]
            for variables, values in changed:
                for variable, value in zip(variables, values):
                    variable.assign(value)
        if in_place:
            _sync_in_place(lookahead.alpha, lookahead.optimizer_state, weights, slow, momentum,
                           slots)
        if applied:
            count += 1
            step.assign(count)
        if starting:
            waiting = waiting - starting
            pending.assign(lookahead.pending_flags(waiting))
        lookahead.host_step, lookahead.host_waiting = count, waiting
        return result


#: No torch.distributed support is tested: one process only (docs/keras3-jax-pytorch.md).
BACKEND = _optimizer_variables.backend(_Torch, distribute=False)


def _all_float32(*groups):
    return all(v.value.dtype == torch.float32 for group in groups for v in group)


def _sync_in_place(alpha, optimizer_state, weights, slow, momentum, slots):
    """The sync of ``NativeLookahead.branch`` (the weights', then the optimizer state's)
    in place on the variables' tensors: the same bits."""
    torch_rule.pull([w.value for w in weights], [v.value for v in slow], alpha)
    if not slots:
        return
    buffers = [v.value for v in slots]
    if optimizer_state == RESET:
        torch_rule.reset(buffers)
    elif optimizer_state == PULLBACK:
        torch_rule.pullback(buffers, [v.value for v in momentum], alpha)
