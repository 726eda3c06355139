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


def build_train_function(model, K, training_updates):
    # Mirrors keras/engine/training.py (2.2.4 L494-519, 2.2.5 L497-522).
    _standalone.build_train_function(model, K, training_updates, _training_metrics)


def _training_metrics(model):
    return model.metrics_tensors, model.metrics_updates


BACKEND = _standalone.backend(build_train_function)
