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

from ..common import estimator, horovod, optimizer_slots
from ..common.attachment import Attachment, all_or_nothing, follow_compile, trainable_weights
from ..common.named_variables import NamedVariable
from ..common.optimizer_chain import check_not_hooked, innermost
from ..common.tf_checkpoint import Checkpointed, CheckpointedStore
from ..common.tf_sync import LookaheadVariables, slow_name


class EagerStore(CheckpointedStore):
    """Slow copies as ``tf.Variable``s made eagerly, in the model's strategy; values
    moved eagerly, also from inside a traced step (``tf.init_scope``).

    A slow copy has its weight's dtype and sits on its weight's device (a
    strategy places its own copies); without a strategy it is a ``NamedVariable``.
    It starts at zero: the in-step start (step 0) or join fills it from the fast
    weight at the first step that trains it.
    """

    def __init__(self, strategy, tf_variable, checkpointed):
        super().__init__(checkpointed)
        self.strategy, self.tf_variable = strategy, tf_variable

    def make_slow(self, weight, kind="slow"):
        fast = self.tf_variable(weight)
        # Never a variable of a traced step: lifted out to the eager context.
        with tf.init_scope(), _scope(self.strategy):
            zeros, name = tf.zeros(fast.shape, fast.dtype), slow_name(fast, kind)
            if tf.distribute.has_strategy():      # False for the default strategy
                slow = tf.Variable(zeros, trainable=False, name=name)
            else:
                # Named: the sync's branch finds it by name, not as an input of every step.
                with tf.device(fast.device):
                    slow = NamedVariable(zeros, name)
            # Eagerly too: a pending checkpoint restore fills the copy as it is added.
            self.checkpointed.add(weight, slow, kind)
        return slow

    def make_flag(self):
        with tf.init_scope(), _scope(self.strategy):
            return tf.Variable(True, trainable=False, name="lookahead_joining",
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @staticmethod
    def read(variables):
        with tf.init_scope():
            return [np.array(v.numpy()) for v in variables]

    @staticmethod
    def write(variables, values):
        with tf.init_scope():
            for variable, value in zip(variables, values):
                variable.assign(value)

    @staticmethod
    def run(key, build):
        build()


def not_converted(function):
    """``function`` as AutoGraph leaves it when it traces a Keras step: the sync builds
    its branches itself (tf.switch_case), and AutoGraph could not read the nested
    branch functions' source (it warned, every trace, and ran them as they are)."""
    do_not_convert = getattr(getattr(tf.autograph, "experimental", None), "do_not_convert", None)
    return do_not_convert(function) if do_not_convert else function


def make_step(strategy):
    with tf.init_scope(), _scope(strategy):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="lookahead_step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def check(model, method):
    """Refuse an optimizer that already carries another model's Lookahead."""
    check_not_hooked(model.optimizer, method)


def lookahead_step(variables, trained, apply, update_count=None, optimizer=None):
    """One Lookahead step of the weights ``trained`` around ``apply()``, the optimizer's
    own update (returns what it returns): the hook's on a compiled model's optimizer and
    the Keras 2 ``LookaheadOptimizer``'s (``tf_hook.lookahead_optimizer``).

    ``variables`` is the ``LookaheadVariables``; ``update_count`` None or a function
    returning ``optimizer``'s count of weight updates (see ``OptimizerHook``).
    """
    # Runs once per trace (every step when run eagerly): weights this step
    # trains for the first time take their slow copies at its first run.
    variables.start_op(trained)
    before = update_count() if update_count else None
    result = apply()
    # Inside a tf.function automatic control dependencies run stateful ops in
    # program order; Keras 3 returns a KerasVariable here, which cannot be a
    # control input (TypeError), so none is passed.
    variables.sync_op(trained, applied=None if before is None else
                      tf.not_equal(update_count(), before), optimizer=optimizer)
    return result


class OptimizerHook(object):
    """Keeps the Lookahead hook on the model's (current) optimizer.

    ``method`` is the optimizer method every update goes through, on the innermost
    optimizer (the inner one of a loss-scale optimizer: called for finite gradients
    only); ``trained_variables(args, kwargs)`` picks the
    variables out of its arguments; ``retrace(model)`` makes Keras build its
    train function again so the hook is traced in. ``update_count(optimizer)``
    is None or a function returning the optimizer's count of weight updates: a
    call that leaves it unchanged (accumulating gradients) is not a Lookahead step.
    """

    def __init__(self, model, variables, method, trained_variables, retrace, update_count):
        self.model, self.variables, self.method = model, variables, method
        self.trained_variables, self.retrace = trained_variables, retrace
        self.update_count = update_count
        self.hooked = None

    def hook(self):
        check_not_hooked(self.model.optimizer, self.method)
        horovod.check(self.model.optimizer)
        # Read when the step is traced (after every compile, see attach).
        self.variables.horovod = horovod.in_use(self.model.optimizer)
        target = innermost(self.model.optimizer)
        original = getattr(target, self.method)
        variables, trained_variables = self.variables, self.trained_variables
        # Decided per optimizer: compile() may bring one that accumulates gradients.
        update_count = self.update_count(target)

        def apply_with_lookahead(*args, **kwargs):
            args, kwargs, trained = trained_variables(args, kwargs)
            if trained is None:
                # Keras 3 apply(grads) updates the variables the optimizer was built on
                # (unbuilt, it raises its own error).
                if not target.built:
                    return original(*args, **kwargs)
                trained = list(target._trainable_variables)
            return lookahead_step(variables, trained, lambda: original(*args, **kwargs),
                                  update_count, target)

        setattr(target, self.method, not_converted(apply_with_lookahead))
        self.hooked = target
        # At inject and after compile() with a new optimizer: refuse here, in plain
        # Python, an optimizer_state it has no meaning for (inside the traced step
        # the error would come later, at the first sync's trace). The hook stays, so
        # training on regardless fails there too instead of running without Lookahead.
        optimizer_slots.check(self.model.optimizer, variables.optimizer_state)

    def unhook(self):
        if self.hooked is not None:
            delattr(self.hooked, self.method)
            self.hooked = None


def attach(model, strategy, tf_variable, k, alpha, method, trained_variables, retrace,
           update_count=lambda optimizer: None, optimizer_state="keep"):
    """Make the Lookahead variables, hook the optimizer, follow it through later
    ``compile()`` calls, retrace; all or nothing."""
    optimizer_slots.check(model.optimizer, optimizer_state)
    with all_or_nothing() as undo:
        step = make_step(strategy)
        checkpointed = Checkpointed(model, step)
        store = EagerStore(strategy, tf_variable, checkpointed)
        variables = LookaheadVariables(step, k, alpha, store, optimizer_state)
        # Slow copies of the weights compile set to train, made now so that a TF
        # checkpoint loaded before the first step restores them; they are filled
        # by the first step (step 0), not taken again when the step is restored.
        variables.mark_trained(trainable_weights(model))
        hook = OptimizerHook(model, variables, method, trained_variables, retrace, update_count)
        hook.hook()
        undo.add(hook.unhook)

        def rehook():
            hook.hook()
            retrace(model)
        follow_compile(model, undo, lambda: variables.compiled(trainable_weights(model)),
                       unhook=hook.unhook, hook=rehook)
        undo.add(lambda: retrace(model))
        retrace(model)
        undo.add(estimator.guard(model))
        attachment = Attachment(model, variables, detach=undo.run)
        # Last: a tracked checkpoint dependency cannot be taken back, only emptied.
        checkpointed.track()
        undo.add(checkpointed.untrack)
    return attachment
