"""Keras 3 with the TensorFlow backend (tf.keras on TF 2.16+, or ``import keras``).

Keras 3 has no graph mode and no ``K.function``, so the blog's rebuild cannot
exist. Every optimizer update, from ``apply_gradients`` or the loss-scale
optimizer, goes through ``optimizer.apply(grads, trainable_variables)``, which
carries the Lookahead sync (see ``_optimizer_hook``). The sync works on the
``tf.Variable`` behind each Keras variable.
"""

import tensorflow as tf

from .. import Backend
from ..common import keras3_files, tf_checkpoint
from . import _optimizer_hook

METHOD = "apply"


def check(model):
    _optimizer_hook.check(model, METHOD)


def attach(model, k, alpha, optimizer_state="keep"):
    attachment = _optimizer_hook.attach(model, model.distribute_strategy, _backing_tf_variable,
                                        k, alpha, METHOD, _trained_variables, _retrace,
                                        _update_count, optimizer_state)
    return keras3_files.install(model, attachment)


def _update_count(optimizer):
    # With gradient_accumulation_steps=n, apply() adds the gradients up and updates
    # the weights on every n-th call only; optimizer.iterations then counts
    # updates (calls // n), so a call that leaves it unchanged was no step.
    if not getattr(optimizer, "gradient_accumulation_steps", None):
        return None
    return lambda: tf.convert_to_tensor(optimizer.iterations)


def _backing_tf_variable(keras_variable):
    # KerasVariable.value is the backing tf.Variable outside an autocast scope
    # (the optimizer's apply runs outside the layers' calls); the sync's tf ops
    # need tf.Variables.
    return keras_variable.value


def _trained_variables(args, kwargs):
    # apply(grads, trainable_variables=None); None means "the variables it was built on".
    trained = args[1] if len(args) > 1 else kwargs.get("trainable_variables")
    return args, kwargs, None if trained is None else list(trained)


def _retrace(model):
    model.train_function = None


BACKEND = Backend(
    # Under a tf.distribute strategy the sync runs in cross-replica context.
    distribute=True,
    # tests/test_state.py, tests/test_keras3_keras_files.py.
    checkpoint_formats=(tf_checkpoint.TF_CHECKPOINT,) + keras3_files.FORMATS,
    check=check, attach=attach)
