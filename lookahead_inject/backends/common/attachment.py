"""What every backend's ``attach`` returns, and how it is undone."""

import contextlib
import logging

from ...errors import StateFileError
from .optimizer_chain import check_not_lookahead

#: Name of the Lookahead state in the model's TF-format checkpoints, and of its section or
#: dataset in Keras' own files (common.keras3_files, common.h5_files).
CHECKPOINT_NAME = "lookahead_inject"

LOG = logging.getLogger("lookahead_inject")


class Attachment(object):
    """A model's Lookahead as installed by one backend.

    ``variables`` is the state the training step updates (a ``LookaheadState``: TF's
    ``tf_sync.LookaheadVariables`` or Keras 3 native's ``NativeLookahead``);
    ``detach()`` restores the model's own training; ``state_written()`` is told when the
    state was set from outside (the step may be 0 again, so the slow weights are to be
    taken again).
    """

    def __init__(self, model, variables, detach, state_written=lambda: None):
        self.model, self.variables = model, variables
        self.detach, self.state_written = detach, state_written
        #: The handle's (get_state, set_state, weight specs), see ``bind``.
        self.handle_state = None

    def bind(self, get_state, set_state, weight_specs):
        """Told by the ``Lookahead`` handle once attached: its own state functions, for a
        backend whose model files carry the state (Keras 3: ``keras3_files``; Keras 2 and
        standalone Keras HDF5: ``h5_files``), so that no backend imports the handle's module."""
        self.handle_state = (get_state, set_state, weight_specs)

    # -- the state in Keras' own files (keras3_files, h5_files) ------------------------------

    def state_bytes(self):
        """The state as the bytes ``la.save`` writes (state.py), or None when attached
        without a handle (no state to save)."""
        if self.handle_state is None:
            return None
        from ... import state as state_format
        get_state, _, weight_specs = self.handle_state
        return state_format.to_bytes(get_state(), weight_specs())

    def restore_bytes(self, data, where):
        """Restore the state from ``data`` (what ``state_bytes`` gave), found in a Keras
        file at ``where`` (e.g. "its section optimizer/lookahead_inject"), which a damaged
        copy's error names."""
        if self.handle_state is None:
            return
        from ... import state as state_format
        _, set_state, _ = self.handle_state
        try:
            lookahead_state = state_format.from_bytes(data, CHECKPOINT_NAME)
        except StateFileError as error:
            raise StateFileError(
                "The Lookahead state in this Keras file ({}) is damaged: {}. The model's "
                "weights and the optimizer's own state are stored apart from it; to resume "
                "Lookahead exactly, load an undamaged copy of the file, or a state file "
                "la.save() wrote (la.load).".format(where, error.problem),
                None, error.problem) from None
        set_state(lookahead_state)

    def restart(self):
        """A Keras file written without Lookahead was loaded: its weights are where
        Lookahead starts, at the next step; says so in one log line."""
        if self.handle_state is None:
            return
        import numpy as np
        get_state, set_state, _ = self.handle_state
        lookahead_state = get_state()
        # Step 0: the next step takes the slow copies from the weights as they are then
        # (the loaded ones), and a "pullback" momentum copy starts at zero again.
        lookahead_state["step"] = 0
        lookahead_state["momentum_cache"] = [np.zeros_like(m)
                                             for m in lookahead_state["momentum_cache"]]
        set_state(lookahead_state)
        # A log line, not a warning: loading plain weights into an injected model is
        # ordinary (pretrained weights, a file from before Lookahead), nothing to fix, and
        # Keras' own "Skipping variable loading" warning, which means a lost optimizer
        # state, stays the only warning such a load can give (tests turn warnings into
        # errors to prove it never comes). WARNING level: shown without logging set up,
        # since a resume that was meant to be exact is not.
        LOG.warning("The loaded Keras file has no Lookahead state (it was written without "
                    "Lookahead): Lookahead starts again at the next step, from the loaded "
                    "weights (step 0).")

    def trainable_weights(self):
        return trainable_weights(self.model)

    def read(self, holders):
        """Numpy values of the state's variables (or of weights), now."""
        return self.variables.read(holders)

    def write(self, holders, values):
        self.variables.write(holders, values)

    def sync_now(self):
        """The in-step sync's rule, run now on the weights training trains."""
        self.variables.sync_now()


def trainable_weights(model):
    """``model.trainable_weights``, or none while the model is not built (Keras 2.4+
    raise for an unbuilt Sequential instead of answering)."""
    return list(model.trainable_weights) if getattr(model, "built", True) else []


class Undo(object):
    """Changes to the user's objects, each with the way to take it back.

    ``attach`` records every change it makes here; if anything fails before
    ``attach`` returns, every recorded change is taken back, newest first, so a
    failed ``inject`` leaves the model exactly as it was.
    """

    def __init__(self):
        self._steps = []

    def set_attribute(self, owner, name, value):
        """``owner.name = value``, undone by deleting the instance attribute or
        restoring the one it replaced."""
        had = name in vars(owner)
        old = vars(owner).get(name)
        setattr(owner, name, value)
        self.add(lambda: setattr(owner, name, old) if had else delattr(owner, name))

    def add(self, undo):
        self._steps.append(undo)

    def run(self):
        while self._steps:
            self._steps.pop()()


@contextlib.contextmanager
def all_or_nothing():
    """``with all_or_nothing() as undo:`` takes back what was recorded in ``undo``
    when the block raises (also KeyboardInterrupt), and re-raises."""
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        raise


@contextlib.contextmanager
def extending(attachment):
    """``with extending(attachment) as undo:`` records more changes for an attachment made
    already (its model's files: keras3_files, h5_files): if the block raises, they and the
    attachment are taken back, and re-raised; else ``attachment.detach`` takes them back too."""
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        attachment.detach()
        raise
    detach = attachment.detach

    def detach_with_extensions():
        undo.run()
        detach()

    attachment.detach = detach_with_extensions


def follow_compile(model, undo, compiled, unhook=lambda: None, hook=lambda: None):
    """Make ``model.compile`` keep Lookahead (recorded in ``undo``): ``unhook()`` before
    Keras' compile, ``compiled()`` after it (the state learns the new trainable weights),
    ``hook()`` after both, also when compile raises (the hook moves to a new optimizer,
    so training never silently goes on without Lookahead)."""
    original_compile = model.compile

    def compile_keeping_lookahead(*args, **kwargs):
        unhook()
        try:
            original_compile(*args, **kwargs)
            check_not_lookahead(model.optimizer)
            compiled()
        finally:
            hook()

    compile_keeping_lookahead.__doc__ = original_compile.__doc__
    undo.set_attribute(model, "compile", compile_keeping_lookahead)
