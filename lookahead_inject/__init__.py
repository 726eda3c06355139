"""Lookahead (Zhang et al. 2019) for an already compiled Keras model, in one call.

    model.compile(optimizer="adam", loss="mse")
    la = lookahead_inject.inject(model, k=5, alpha=0.5)
    model.fit(x, y)

Importing this package does not import TensorFlow; ``inject`` and ``detect`` do.
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
