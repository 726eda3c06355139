"""Keras 3 with the TensorFlow backend, for ``LookaheadOptimizer`` (``inject`` on Keras 3 /
TensorFlow hooks the optimizer with TF ops instead: ``tf_hook.keras3_tf``).

The optimizer form keeps its state in the optimizer's variables, as on JAX and PyTorch,
so Keras' own files carry it with the optimizer that names it. Keras traces the step
into a ``tf.function`` (or runs it eagerly: ``run_eagerly``, or a loop of the user's
own); the start and the sync are branches that write the variables, built as the TF
backends build theirs (``common.tf_sync.run_if``: a Case op kept unlowered where it can
be), so a step that takes neither writes no weight and no slow copy. The slow copies are
named resources (``common.named_variables``) that the branches find by name, so the step
does not hand them to its branch ops (issue #22). Under a tf.distribute strategy they run
once, in cross-replica context, like the TF backends'.
"""

import contextlib

import numpy as np
import tensorflow as tf
from keras import ops

from ...rule import ops_rule
from ..common import named_variables
from ..common.tf_sync import looked_up_by_name, once_for_all_replicas, run_if
from . import _optimizer_variables


class _TensorFlow(_optimizer_variables.Platform):

    #: One slow-copy variable per weight: each is written in its branch, in place.
    PACKED = 0

    @staticmethod
    @contextlib.contextmanager
    def making_variables():
        # Eagerly: Keras 3 builds the optimizer inside the first trace of its train
        # function, where a value set would be an op of every step (the counter was set
        # back to 0 at each call once the variables were named: tf.function retraces
        # only after variables made through its own creator). Named: the branches find
        # the slow copies by name.
        with tf.init_scope(), named_variables.made_named():
            yield

    @staticmethod
    def to_numpy(value):
        return np.array(ops.convert_to_numpy(value))

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        weights, slow, momentum, slots, step, pending = lookahead.variables_in_step(
            None if trainable_variables is None else list(trainable_variables))
        tf_variables = [v.value for v in weights + slow + list(momentum) + list(slots)]
        slow_in_branch = looked_up_by_name([v.value for v in slow], tf_variables)

        def start():
            count = ops.convert_to_tensor(step.value)
            taking, pending_after = lookahead.taking_in_step(weights, count)

            def take():
                # A start copies the weights as they are before this step's update.
                copies = slow_in_branch()
                for flag, weight, copy in zip(ops.unstack(taking, len(weights)), weights, copies):
                    copy.assign(ops.where(ops.greater(flag, 0), weight.value, copy.read_value()))
                return _ran()

            run_if(ops.any(ops.greater(taking, 0)), take, tf_variables)
            pending.assign(pending_after)
            return count

        count = once_for_all_replicas(start)
        applied_now = _optimizer_variables.update_applied(optimizer)
        result = original_apply(grads, trainable_variables)

        def count_and_sync():
            applied = applied_now()

            def pull_together():
                copies = slow_in_branch()
                pulled = ops_rule.pull([w.value for w in weights],
                                       [c.read_value() for c in copies], lookahead.alpha)
                momentum_values, slot_values = lookahead.synced_slots(
                    [v.value for v in momentum], [v.value for v in slots])
                for variables, values in ((weights, pulled), (copies, pulled),
                                          (momentum, momentum_values), (slots, slot_values)):
                    for variable, value in zip(variables, values):
                        variable.assign(value)
                return _ran()

            run_if(ops.logical_and(ops.equal(applied, 1),
                                   ops.equal(ops.mod(count + 1, lookahead.k), 0)),
                   pull_together, tf_variables)
            step.assign(count + applied)
            return _ran()

        once_for_all_replicas(count_and_sync)
        return result


def _ran():
    return ops.convert_to_tensor(True)
