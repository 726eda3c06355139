"""Where a Keras 2 loss-scale optimizer takes its step: inside a cond on finite gradients.

The ``LossScaleOptimizer`` of tf.keras (TF 1.14 - 2.15, tf-keras) is what
``compile`` wraps the optimizer in under the ``mixed_float16`` policy, and what
``enable_mixed_precision_graph_rewrite`` returns. Its ``apply_gradients``
decides in a cond whether the gradients are finite, and calls the inner
optimizer's ``apply_gradients`` only in the branch where they are. The
finiteness is not public API, but that call is: a Lookahead sync built inside
it counts and syncs only the steps that were applied, in a TF 2 ``tf.function``
and in a graph train function alike (v1 cond in TF 1.x, functional If in TF 2).
"""

import contextlib

import tensorflow as tf

from ..common.optimizer_chain import innermost


@contextlib.contextmanager
def sync_inside_applied_step(optimizer, sync_op):
    """While a graph train function is built, put ``sync_op`` inside the applied step.

    If ``optimizer`` scales the loss, its inner optimizer's ``apply_gradients``
    builds ``sync_op(after=[update])`` next to its update, inside the loss
    scaler's cond. Yields a list that holds True once that happened; it stays
    empty for an optimizer without loss scaling, whose caller syncs after it.
    """
    synced = []
    inner = innermost(optimizer)
    if inner is optimizer:
        yield synced
        return
    shadowed = vars(inner).get("apply_gradients")
    original = inner.apply_gradients

    def apply_gradients(*args, **kwargs):
        update = original(*args, **kwargs)
        synced.append(True)
        return tf.group(update, sync_op(after=[update]))

    inner.apply_gradients = apply_gradients
    try:
        yield synced
    finally:
        if shadowed is None:
            del inner.apply_gradients
        else:
            inner.apply_gradients = shadowed
