"""The rule in ``keras.ops``, for the Keras 3 backends that have no TensorFlow (JAX,
PyTorch).

Functions of values, not variables: JAX's training step is a pure function of its
state, so each returns new values and the caller assigns them (inside the
optimizer's stateless scope on JAX, in place on PyTorch).
"""

from keras import ops


def pull(fast, slow, alpha):
    """``slow + alpha (fast - slow)`` for each (fast, slow) pair: the new slow weights,
    which are also the new fast weights."""
    return [s + ops.cast(alpha, s.dtype) * (f - s) for f, s in zip(fast, slow)]


def reset(slots):
    """optimizer_state="reset": every slot back to zero."""
    return [ops.zeros_like(slot) for slot in slots]


def pullback(buffers, cached, alpha):
    """optimizer_state="pullback": ``buf <- alpha buf + (1 - alpha) cached``; the
    result is also the new cache."""
    return [ops.cast(alpha, b.dtype) * b + ops.cast(1 - alpha, b.dtype) * c
            for b, c in zip(buffers, cached)]
