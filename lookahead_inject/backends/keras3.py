"""Keras 3 with the TensorFlow backend (tf.keras on TF 2.16+, or ``import keras``).

Keras 3 has no graph mode and no ``K.function``, so the blog's rebuild cannot
exist. Every optimizer update, from ``apply_gradients`` or the loss-scale
optimizer, goes through ``optimizer.apply(grads, trainable_variables)``, which
carries the Lookahead sync (see ``_optimizer_hook``). The sync works on the
``tf.Variable`` behind each Keras variable.
"""

import tensorflow as tf

from . import _keras3_files, _optimizer_hook

#: Lookahead under a tf.distribute strategy: the sync runs in cross-replica context.
DISTRIBUTE = True

#: Checkpoint formats that carry the Lookahead state by themselves (tests/test_state.py,
#: tests/test_keras3_keras_files.py; Keras' own files: _keras3_files).
CHECKPOINT_FORMATS = ("tf.train.Checkpoint(model=model, optimizer=model.optimizer)",
                      ".keras (model.save, ModelCheckpoint)",
                      ".weights.h5 (save_weights, ModelCheckpoint, BackupAndRestore)")

METHOD = "apply"


def innermost(optimizer):
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def check(model):
    _optimizer_hook.check_not_hooked(model.optimizer, METHOD, innermost)


def attach(model, k, alpha, optimizer_state="keep"):
    attachment = _optimizer_hook.attach(model, model.distribute_strategy, _backing_tf_variable,
                                        k, alpha, METHOD, innermost, _trained_variables, _retrace,
                                        _update_count, optimizer_state)
    return _keras3_files.install(model, attachment)


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
