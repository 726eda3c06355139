"""What the eager backends (tf2_eager, keras3) share: Lookahead around the optimizer's apply step.

In eager TF 2 there is no graph train function to rebuild, and TF 2.0/2.1 do not
even use ``model.train_function``. Every training path (fit, train_on_batch,
fit_generator, run_eagerly or not, a custom ``train_step`` that calls the
optimizer) ends in one method of the optimizer that updates the weights. This
module replaces that method on the optimizer instance with one that runs the
original and then the Lookahead sync, so the sync is traced into the same
``tf.function`` as the fast step. Under a loss-scale optimizer the hook sits on
the inner optimizer, which is only called for finite gradients: a skipped step
is not a Lookahead step.
"""

import contextlib

import numpy as np
import tensorflow as tf

from ..errors import ModelNotReadyError
from ._attachment import Attachment
from . import _optimizer_state
from ._optimizer_state import PULLBACK
from ._sync import LookaheadVariables, cache_name, slow_name


def create_variables(fast, k, alpha, strategy, handed_to_optimizer=None, optimizer_state="keep"):
    """Slow copies (dtype and device of their fast weight) and the step counter.

    Created eagerly at inject time, in the model's distribution strategy scope
    (never lazily inside a traced step). They start at zero: the first training
    step fills them from the fast weights.
    """
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with tf.init_scope(), scope:
        distributed = tf.distribute.has_strategy()     # False for the default strategy
        slow, cache = [], []
        for weight in fast:
            # A strategy places its own copies; on one device a copy sits by its weight.
            device = tf.device(weight.device) if not distributed else contextlib.nullcontext()
            with device:
                slow.append(tf.Variable(tf.zeros(weight.shape, weight.dtype), trainable=False,
                                        name=slow_name(weight)))
                if optimizer_state == PULLBACK:
                    cache.append(tf.Variable(tf.zeros(weight.shape, weight.dtype),
                                             trainable=False, name=cache_name(weight)))
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="lookahead_step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    return LookaheadVariables(fast, slow, step, k, alpha, handed_to_optimizer,
                              optimizer_state=optimizer_state, momentum_cache=cache)


def check_not_hooked(optimizer, method, innermost):
    """Refuse an optimizer that already carries another model's Lookahead."""
    target = innermost(optimizer)
    if method in vars(target):
        raise ModelNotReadyError(
            "The optimizer {!r} already drives another model's Lookahead. Each "
            "model needs its own optimizer: compile this one with a new "
            "optimizer instance.".format(getattr(target, "name", type(target).__name__)))


class OptimizerHook(object):
    """Keeps the Lookahead hook on the model's (current) optimizer.

    ``method`` is the optimizer method every update goes through;
    ``innermost(optimizer)`` finds the optimizer that runs it (the inner one of a
    loss-scale optimizer); ``trained_variables(args, kwargs)`` picks the
    variables out of its arguments; ``retrace(model)`` makes Keras build its
    train function again so the hook is traced in.
    """

    def __init__(self, model, variables, method, innermost, trained_variables, retrace):
        self.model, self.variables, self.method = model, variables, method
        self.innermost, self.trained_variables, self.retrace = innermost, trained_variables, retrace
        self.hooked = None

    def hook(self):
        check_not_hooked(self.model.optimizer, self.method, self.innermost)
        target = self.innermost(self.model.optimizer)
        original = getattr(target, self.method)
        variables, trained_variables = self.variables, self.trained_variables

        def apply_with_lookahead(*args, **kwargs):
            args, kwargs, trained = trained_variables(args, kwargs)
            if trained is not None:
                variables.check_covers(trained)
            variables.start_op()
            result = original(*args, **kwargs)
            # Inside a tf.function automatic control dependencies run stateful ops in
            # program order; Keras 3 returns a KerasVariable here, which cannot be a
            # control input (TypeError), so none is passed.
            variables.sync_op(optimizer=target)
            return result

        setattr(target, self.method, apply_with_lookahead)
        self.hooked = target
        # After compile() with a new optimizer: refuse here, in plain Python, an
        # optimizer_state it has no meaning for (inside the traced step the same error
        # would come wrapped in autograph's StagingError). The hook stays, so training
        # on regardless fails there too instead of running without Lookahead.
        _optimizer_state.check(self.model.optimizer, variables.optimizer_state)

    def unhook(self):
        if self.hooked is not None:
            delattr(self.hooked, self.method)
            self.hooked = None


def attach(model, variables, method, innermost, trained_variables, retrace):
    """Hook the optimizer, follow it through later ``compile()`` calls, retrace."""
    hook = OptimizerHook(model, variables, method, innermost, trained_variables, retrace)
    hook.hook()
    original_compile = model.compile

    def compile_keeping_lookahead(*args, **kwargs):
        # compile() may bring a new optimizer; the hook moves to it, so training
        # never silently continues without Lookahead.
        hook.unhook()
        try:
            original_compile(*args, **kwargs)
        finally:
            hook.hook()
            retrace(model)

    compile_keeping_lookahead.__doc__ = original_compile.__doc__
    model.compile = compile_keeping_lookahead
    retrace(model)

    def detach():
        hook.unhook()
        del model.compile
        retrace(model)

    return Attachment(model, variables, read=_read, write=_write, detach=detach)


def _read(variables):
    return [np.array(v.numpy()) for v in variables]


def _write(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)
