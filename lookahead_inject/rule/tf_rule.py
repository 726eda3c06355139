"""The rule in TensorFlow ops on variables, for every TF backend.

Each function returns the update ops; they use only public TensorFlow API and work
in a TF1 graph (TF1 ref variables too, which standalone Keras 2.2 makes), in a
``tf.function`` and eagerly. Where they run (the rebuilt graph train function, the
optimizer's apply step, ``Lookahead.sync()``) is the backends' choice.
"""

import tensorflow as tf


def pull(fast, slow, alpha):
    """``slow <- slow + alpha (fast - slow); fast <- slow`` for each (fast, slow) pair
    of variables."""
    updates = []
    for f, s in zip(fast, slow):
        # base_dtype: a ref variable's dtype is the "_ref" twin of its value's.
        a = tf.cast(alpha, tf.as_dtype(s.dtype).base_dtype)
        # In place: slow += alpha (fast - slow) is one temporary and one update of
        # slow; the value it returns (read after the add) is copied into fast.
        updates.append(f.assign(updated(s.assign_add(a * (f - s)), s)))
    return updates


def reset(slots):
    """optimizer_state="reset": every slot variable set to zero."""
    return [slot.assign(tf.zeros(slot.shape, slot.dtype.base_dtype)) for slot in slots]


def pullback(buffers, cached, alpha):
    """optimizer_state="pullback": ``buf <- alpha buf + (1 - alpha) cached; cached <- buf``
    for each (buffer, cached copy) pair of variables."""
    updates = []
    for buf, copy in zip(buffers, cached):
        a = tf.cast(alpha, buf.dtype.base_dtype)
        updates.append(copy.assign(updated(buf.assign(a * buf + (1 - a) * copy), buf)))
    return updates


def updated(result, variable):
    """The value of ``variable`` after the update that returned ``result``.

    TF 1 graphs order ops only by data dependency, so the update's own result is
    used. Under a strategy, TF 2.0-2.2 return per-replica values from a mirrored
    update, which ops cannot take; there the variable is read again (a
    tf.function orders that read after the update).
    """
    return variable.read_value() if has_strategy() else result


def has_strategy():
    # TF 1.x has no has_strategy; its graph backends refuse strategies altogether.
    return getattr(tf.distribute, "has_strategy", lambda: False)()
