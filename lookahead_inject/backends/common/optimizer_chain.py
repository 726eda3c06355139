"""The optimizers that wrap one another (a loss-scale optimizer around the user's, Horovod's
DistributedOptimizer), and the one inside that takes the step. No TF import."""

from ...errors import ModelNotReadyError


def chain(optimizer):
    """``optimizer`` and each optimizer it wraps, outermost first."""
    # The inner one is public `inner_optimizer` from TF 2.4 (and in Keras 3), `_optimizer`
    # in the experimental LossScaleOptimizer of TF 1.14 - 2.3.
    seen = set()
    while optimizer is not None and id(optimizer) not in seen:
        seen.add(id(optimizer))
        yield optimizer
        inner = getattr(optimizer, "inner_optimizer", None)
        if inner is None and type(optimizer).__name__ == "LossScaleOptimizer":
            inner = getattr(optimizer, "_optimizer", None)
        optimizer = inner


def innermost(optimizer):
    """The optimizer that applies the step (the inner one of a loss-scale optimizer)."""
    for optimizer in chain(optimizer):
        pass
    return optimizer


def check_not_hooked(optimizer, method):
    """Refuse an optimizer whose innermost one already carries another model's Lookahead
    on ``method``."""
    target = innermost(optimizer)
    if method in vars(target):
        raise ModelNotReadyError(
            "The optimizer {!r} already drives another model's Lookahead. Each "
            "model needs its own optimizer: compile this one with a new "
            "optimizer instance.".format(getattr(target, "name", type(target).__name__)))
