"""Standalone Keras 2.2.4 / 2.2.5 (``import keras``) on TF 1.14 / 1.15, graph mode.

The train function is built as keras/engine/training.py (2.2.4 L494-519, 2.2.5
L497-522 — the same code) builds it: the model's updates (``self.updates``:
BatchNormalization statistics) first, then the optimizer's, then the stateful
metrics' (``metrics_updates``); outputs are ``metrics_tensors``. The Lookahead
sync is ordered after the optimizer's updates inside the same ``K.function``.
Keras 2.2 makes TF1 ref variables (``tf.Variable``), and so are the slow copies
``K.variable`` makes here.
"""

from . import _standalone
from ._standalone import CHECKPOINT_FORMATS, DISTRIBUTE, check  # noqa: F401


def attach(model, k, alpha, optimizer_state="keep"):
    return _standalone.attach(model, k, alpha, build_train_function, optimizer_state)


def build_train_function(model, K, training_updates):
    if not hasattr(model, "train_function"):
        raise RuntimeError("You must compile your model before using it.")
    model._check_trainable_weights_consistency()
    if model.train_function is not None:
        return
    inputs = _standalone.feed_inputs(model, K)
    with K.name_scope("training"):
        optimizer_updates = _standalone.training_updates_in_scope(model, K, training_updates)
        updates = model.updates + optimizer_updates + model.metrics_updates
        model.train_function = K.function(
            inputs, [model.total_loss] + model.metrics_tensors,
            updates=updates, name="train_function", **model._function_kwargs)
