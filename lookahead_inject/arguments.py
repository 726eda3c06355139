"""The checks of Lookahead's arguments (k, alpha, optimizer_state), for both entry points:
``Lookahead`` / ``inject`` and ``LookaheadOptimizer``."""

import math
import numbers

from .errors import InvalidArgumentError
from .rule import OPTIMIZER_STATES


def checked_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidArgumentError(
            "k={!r}: k is the number of fast steps between two syncs and must be "
            "a positive int, e.g. k=5.".format(k))
    return int(k)


def checked_alpha(alpha):
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or math.isnan(alpha) or not 0.0 <= alpha <= 1.0):
        raise InvalidArgumentError(
            "alpha={!r}: alpha is the slow weights' step size and must be a number "
            "in [0, 1], e.g. alpha=0.5 (1 keeps the fast weights, 0 resets to the "
            "slow ones).".format(alpha))
    return float(alpha)


def checked_optimizer_state(optimizer_state):
    if optimizer_state not in OPTIMIZER_STATES:
        raise InvalidArgumentError(
            "optimizer_state={!r}: it says what a sync does to the optimizer's own state and "
            "is one of 'keep' (leave it, the default), 'reset' (its per-weight slots back "
            "to zero) or 'pullback' (SGD momentum interpolated like the weights).".format(
                optimizer_state))
    return optimizer_state
