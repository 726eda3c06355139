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


def k_and_alpha(k, alpha, sync_period, slow_step_size):
    """``LookaheadOptimizer``'s k and alpha, from the library's names or tfa's
    (``sync_period``, ``slow_step_size``); k=5, alpha=0.5 when neither is given."""
    for ours, theirs, name, tfa_name in ((k, sync_period, "k", "sync_period"),
                                         (alpha, slow_step_size, "alpha", "slow_step_size")):
        if ours is not None and theirs is not None and ours != theirs:
            raise InvalidArgumentError(
                "{}={!r} and {}={!r} name the same setting ({} is tfa's name for {}) with "
                "two values. Pass one of them.".format(name, ours, tfa_name, theirs,
                                                         tfa_name, name))
    k = k if k is not None else sync_period
    alpha = alpha if alpha is not None else slow_step_size
    return checked_k(5 if k is None else k), checked_alpha(0.5 if alpha is None else alpha)


def checked_wrapper_arguments(kwargs, inner_only):
    """Refuse ``LookaheadOptimizer`` arguments other than its own: those of the base
    optimizer (``inner_only``: name -> default) belong on the inner optimizer."""
    kwargs = dict(kwargs)
    for argument, default in inner_only.items():
        if argument in kwargs and kwargs.pop(argument) != default:
            raise InvalidArgumentError(
                "LookaheadOptimizer takes no {0}: set {0} on the inner optimizer, "
                "which takes the fast steps.".format(argument))
    if kwargs:
        raise InvalidArgumentError(
            "LookaheadOptimizer got unknown arguments {}; it takes the inner optimizer, "
            "k (or sync_period), alpha (or slow_step_size), optimizer_state and "
            "name.".format(", ".join(sorted(kwargs))))
