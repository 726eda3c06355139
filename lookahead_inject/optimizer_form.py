"""Where ``lookahead_inject.LookaheadOptimizer`` comes from: the Keras 3 optimizer
(``backends/native/lookahead_optimizer.py``), or a refusal that names the fix on a Keras
that is not Keras 3."""

import importlib

from .environment import is_keras_3
from .errors import UnsupportedEnvironmentError


def lookahead_optimizer_class():
    try:
        keras = importlib.import_module("keras")
    except ImportError:
        keras = None
    version = getattr(keras, "__version__", None)
    if version is None or not is_keras_3(version):
        raise UnsupportedEnvironmentError(
            "LookaheadOptimizer is a Keras 3 optimizer; {}. On Keras 2 (tf.keras up to TF "
            "2.15, tf-keras) add Lookahead to the compiled model instead: "
            "model.compile(optimizer=...); lookahead_inject.inject(model, k=5, alpha=0.5). "
            "Or install keras>=3.15.".format(
                "keras is not installed" if keras is None
                else "the installed keras is {}".format(version)))
    from .backends.native.lookahead_optimizer import LookaheadOptimizer
    return LookaheadOptimizer
