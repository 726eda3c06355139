"""Standalone Keras 2.3.x (``import keras``) on TF 1.14 / 1.15, graph mode.

The train function is built as keras/engine/training.py (2.3.1, L301-332)
builds it: metrics are Metric objects (``_get_training_eval_metrics``) whose
``_call_result`` are the outputs and whose own ``updates`` run with the model's
(``self.updates``) and the optimizer's. The Lookahead sync is ordered after the
optimizer's updates inside the same ``K.function``. Keras 2.3 makes resource
variables (through tf.keras' backend), so the sync takes the functional branch.
"""

from . import _standalone


def build_train_function(model, K, training_updates):
    # Mirrors keras/engine/training.py (2.3.1, L301-332).
    _standalone.build_train_function(model, K, training_updates, _training_metrics)


def _training_metrics(model):
    metrics = model._get_training_eval_metrics()
    tensors = [m._call_result for m in metrics if hasattr(m, "_call_result")]
    return tensors, [update for metric in metrics for update in metric.updates]


BACKEND = _standalone.backend(build_train_function)
