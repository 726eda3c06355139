"""Where ``lookahead_inject.LookaheadOptimizer`` comes from: the Keras 3 optimizer
(``backends/native/lookahead_optimizer.py``) where ``import keras`` is Keras 3 and
``tf.keras`` is not tf-keras; the Keras 2 one (``backends/tf_hook/lookahead_optimizer.py``)
where ``tf.keras`` is Keras 2 (TF 2.0 - 2.15, or tf-keras with TF_USE_LEGACY_KERAS=1);
else a refusal that names the fix."""

import importlib
import os

from .environment import is_keras_3, keras_2_behind_tf_keras
from .errors import UnsupportedEnvironmentError


def lookahead_optimizer_class():
    try:
        keras = importlib.import_module("keras")
    except ImportError:
        keras = None
    version = getattr(keras, "__version__", None)
    if version is not None and is_keras_3(version) and not legacy_keras_requested():
        from .backends.native.lookahead_optimizer import LookaheadOptimizer
        return LookaheadOptimizer
    try:
        keras_2, why_not = keras_2_behind_tf_keras()
    except UnsupportedEnvironmentError as error:
        if version is not None and is_keras_3(version):
            # TF_USE_LEGACY_KERAS set where no TensorFlow is (Keras 3 on JAX / PyTorch):
            # it names no other Keras.
            from .backends.native.lookahead_optimizer import LookaheadOptimizer
            return LookaheadOptimizer
        keras_2, why_not = None, str(error)
    if keras_2 is not None:
        from .backends.tf_hook.lookahead_optimizer import LookaheadOptimizer
        return LookaheadOptimizer
    raise UnsupportedEnvironmentError(
        "LookaheadOptimizer is a Keras 3 optimizer (keras>=3.15) and a Keras 2 one on "
        "TensorFlow 2 (tf.keras up to TF 2.15, tf-keras); here {}{}. On TF 1.x add "
        "Lookahead to the compiled model instead: model.compile(optimizer=...); "
        "lookahead_inject.inject(model, k=5, alpha=0.5).".format(
            why_not, "" if keras is None or version is None
            else ", and the installed keras is {}".format(version)))


def legacy_keras_requested():
    """TF_USE_LEGACY_KERAS as TensorFlow reads it: ``tf.keras`` is tf-keras (TF 2.16+)."""
    return os.environ.get("TF_USE_LEGACY_KERAS", None) in ("true", "True", "1")
