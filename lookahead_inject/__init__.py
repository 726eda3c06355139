"""Lookahead (Zhang et al. 2019) for an already compiled Keras model, in one call.

    model.compile(optimizer="adam", loss="mse")
    la = lookahead_inject.inject(model, k=5, alpha=0.5)
    model.fit(x, y)

Or as an optimizer, on Keras 3 and on Keras 2 with TF 2 (also for loops that never call
``compile``):

    from lookahead_inject import LookaheadOptimizer
    model.compile(optimizer=LookaheadOptimizer("adam", k=5, alpha=0.5), loss="mse")

Importing this package does not import TensorFlow; ``inject`` and ``detect`` do, and
``LookaheadOptimizer`` imports Keras when it is first asked for.
"""

from .errors import (EstimatorNotSupportedError, InvalidArgumentError, LookaheadError,
                     ModelNotReadyError, NoLookaheadStateWarning, OptimizerStateError,
                     StateFileError, UnsupportedEnvironmentError)
from .loading import load_model
from .lookahead import Lookahead, detect, inject, of

__version__ = "0.1.0"

__all__ = ["inject", "Lookahead", "detect", "of", "load_model", "LookaheadError",
           "InvalidArgumentError", "ModelNotReadyError", "StateFileError", "UnsupportedEnvironmentError",
           "EstimatorNotSupportedError", "OptimizerStateError", "NoLookaheadStateWarning",
           "__version__"]


def __getattr__(name):
    # LookaheadOptimizer subclasses a Keras optimizer (Keras 3's, or Keras 2's legacy one):
    # it imports Keras (and registers the class for Keras' files) when a script first asks
    # for it, not at import.
    if name == "LookaheadOptimizer":
        from .optimizer_form import lookahead_optimizer_class
        return lookahead_optimizer_class()
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
