"""The rule in numpy: the reference every other vocabulary is tested against, and the
sync of selftest's and tests/reference.py's simulations. Functions of arrays that
return new arrays of the arrays' own dtype (float64 there, float32 in the tests)."""

import numpy as np


def pull(fast, slow, alpha):
    """``slow + alpha (fast - slow)`` for each (fast, slow) pair: the new slow weights,
    which are also the new fast weights (copy one before writing it in place)."""
    return [s + alpha * (f - s) for f, s in zip(fast, slow)]


def reset(slots):
    """optimizer_state="reset": every slot back to zero."""
    return [np.zeros_like(slot) for slot in slots]


def pullback(buffers, cached, alpha):
    """optimizer_state="pullback": ``buf <- alpha buf + (1 - alpha) cached``; the result
    is also the new cache."""
    return [alpha * b + (1 - alpha) * c for b, c in zip(buffers, cached)]
