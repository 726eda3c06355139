"""The optimizer that takes the step, inside the optimizers that wrap it (no TF import)."""


def innermost(optimizer):
    """The optimizer that applies the step (the inner one of a loss-scale optimizer)."""
    # The inner one is public `inner_optimizer` from TF 2.4, `_optimizer` in the
    # experimental LossScaleOptimizer of TF 1.14 - 2.3.
    while True:
        inner = getattr(optimizer, "inner_optimizer", None)
        if inner is None and type(optimizer).__name__ == "LossScaleOptimizer":
            inner = getattr(optimizer, "_optimizer", None)
        if inner is None:
            return optimizer
        optimizer = inner
