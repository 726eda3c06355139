"""Errors raised by lookahead_inject.

Every error says what is wrong and how to fix it, and is raised before any
TensorFlow internals are touched, so a failed ``inject`` leaves the model as it
was.
"""


class LookaheadError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidArgumentError(LookaheadError, ValueError):
    """An argument to ``inject`` / ``Lookahead`` is out of range or of the wrong type."""


class StateFileError(InvalidArgumentError):
    """``la.load``'s file is missing, empty, truncated, damaged, of another kind, or its
    header lacks or garbles a field. ``path`` is the file's path."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class ModelNotReadyError(LookaheadError, RuntimeError):
    """The model cannot take Lookahead as it is (not compiled, several optimizers, ...)."""


class UnsupportedEnvironmentError(LookaheadError, RuntimeError):
    """The running TensorFlow / Keras / execution mode has no backend."""
