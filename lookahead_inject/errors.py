"""Errors raised by lookahead_inject.

Every error says what is wrong and how to fix it, and is raised before any
TensorFlow internals are touched, so a failed ``inject`` leaves the model as it
was.
"""


class LookaheadError(Exception):
    """Base class of every error this library raises on purpose."""

    #: Raised while Keras traces a training step, an error passes through AutoGraph
    #: (TF 1.15 - 2.x) as it is, instead of being rebuilt with AutoGraph's own text
    #: first or replaced by its StagingError, so ``except LookaheadError`` catches it.
    ag_pass_through = True


class InvalidArgumentError(LookaheadError, ValueError):
    """An argument to ``inject`` / ``Lookahead`` is out of range or of the wrong type."""


class StateFileError(InvalidArgumentError):
    """``la.load``'s file is missing, empty, truncated, damaged, of another kind, or its
    header lacks or garbles a field. ``path`` is the file's path; ``problem`` what is wrong
    with it, in a few words."""

    def __init__(self, message, path=None, problem=None):
        super().__init__(message)
        self.path, self.problem = path, problem


class ModelNotReadyError(LookaheadError, RuntimeError):
    """The model cannot take Lookahead as it is (not compiled, several optimizers, ...)."""


class UnsupportedEnvironmentError(LookaheadError, RuntimeError):
    """The running TensorFlow / Keras / execution mode has no backend."""


class EstimatorNotSupportedError(ModelNotReadyError):
    """``model_to_estimator`` was given a model that trains with Lookahead."""


class OptimizerStateError(ModelNotReadyError):
    """``optimizer_state`` ("reset", "pullback") has no meaning for the model's optimizer,
    or is not supported where it trains (standalone Keras, Horovod)."""


class NoLookaheadStateWarning(UserWarning):
    """A Keras file was written that holds no Lookahead state (its format has no place for
    it, e.g. Keras 2.13+'s ``.keras`` zip): save the state with ``la.save(path)``."""
