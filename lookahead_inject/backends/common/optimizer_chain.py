"""The optimizers that wrap one another (a loss-scale optimizer around the user's, Horovod's
DistributedOptimizer), and the one inside that takes the step. No TF import."""

from ...errors import InvalidArgumentError, ModelNotReadyError

#: A class attribute, True on ``LookaheadOptimizer`` (Keras 3's and Keras 2's): that
#: optimizer is Lookahead itself.
IS_LOOKAHEAD = "is_lookahead_optimizer"


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
    on ``method``, or that is a ``LookaheadOptimizer``."""
    check_not_lookahead(optimizer)
    target = innermost(optimizer)
    if method in vars(target):
        raise ModelNotReadyError(
            "The optimizer {!r} already drives another model's Lookahead. Each "
            "model needs its own optimizer: compile this one with a new "
            "optimizer instance.".format(getattr(target, "name", type(target).__name__)))


def check_not_lookahead(optimizer):
    """Refuse to inject Lookahead into a model whose optimizer is a ``LookaheadOptimizer``
    (or wraps one): that would be Lookahead twice, two cycles on one weight."""
    for each in chain(optimizer):
        if getattr(type(each), IS_LOOKAHEAD, False):
            raise ModelNotReadyError(
                "The model's optimizer is a LookaheadOptimizer (k={}, alpha={}), which is "
                "Lookahead already; inject would add a second one. Train as it is, or "
                "compile with its inner optimizer (optimizer.inner_optimizer) and inject "
                "that.".format(each.k, each.alpha))


def passed_to_inner(name):
    """A property that reads and sets the wrapped optimizer's (``inner_optimizer``)
    attribute ``name``: what a user reads off a ``LookaheadOptimizer`` (learning rate,
    iterations) is its inner optimizer's, as with Keras' ``LossScaleOptimizer``."""
    return property(lambda self: getattr(self.inner_optimizer, name),
                    lambda self, value: setattr(self.inner_optimizer, name, value))


def check_no_loss_scale_inside(optimizer):
    """Refuse ``LookaheadOptimizer(LossScaleOptimizer(...))``: it would count skipped steps."""
    if any(cls.__name__.startswith("LossScaleOptimizer") for cls in type(optimizer).__mro__):
        raise InvalidArgumentError(
            "LookaheadOptimizer(LossScaleOptimizer(...)) would count the steps the "
            "loss scale skips. Wrap the other way round: "
            "LossScaleOptimizer(LookaheadOptimizer(...)) (Keras does so itself under "
            "a mixed_float16 policy).")
