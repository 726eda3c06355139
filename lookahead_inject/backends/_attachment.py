"""What every backend's ``attach`` returns, how it is undone, and how the state rides
along in checkpoints."""

import contextlib
import logging

from ..errors import ModelNotReadyError, StateFileError

#: Name of the Lookahead state in the model's TF-format checkpoints, and of its section or
#: dataset in Keras' own files (_keras3_files, _h5_files).
CHECKPOINT_NAME = "lookahead_inject"

LOG = logging.getLogger("lookahead_inject")


class Attachment(object):
    """A model's Lookahead as installed by one backend.

    ``variables`` is the ``LookaheadVariables`` the training step updates;
    ``read(vars)`` / ``write(vars, values)`` move numpy values in and out of TF
    variables the way this TF version wants; ``run(build)`` runs the ops that
    ``build()`` makes, now; ``detach()`` restores the model's own training;
    ``state_written()`` is told when the state was set from outside (the step
    may be 0 again, so the slow weights are to be taken again); ``sync_now()``
    runs the in-step sync's rule now (None: the TF rule of ``_sync``, through ``run``).
    """

    def __init__(self, model, variables, read, write, run, detach, state_written=lambda: None,
                 sync_now=None):
        self.model, self.variables = model, variables
        self.read, self.write, self.run = read, write, run
        self.detach, self.state_written = detach, state_written
        self._sync_now = sync_now
        #: The handle's (get_state, set_state, weight specs), see ``bind``.
        self.handle_state = None

    def bind(self, get_state, set_state, weight_specs):
        """Told by the ``Lookahead`` handle once attached: its own state functions, for a
        backend whose model files carry the state (Keras 3: ``_keras3_files``; Keras 2 and
        standalone Keras HDF5: ``_h5_files``), so that no backend imports the handle's module."""
        self.handle_state = (get_state, set_state, weight_specs)

    # -- the state in Keras' own files (_keras3_files, _h5_files) -------------------------

    def state_bytes(self):
        """The state as the bytes ``la.save`` writes (state.py), or None when attached
        without a handle (no state to save)."""
        if self.handle_state is None:
            return None
        from .. import state as state_format
        get_state, _, weight_specs = self.handle_state
        return state_format.to_bytes(get_state(), weight_specs())

    def restore_bytes(self, data, where):
        """Restore the state from ``data`` (what ``state_bytes`` gave), found in a Keras
        file at ``where`` (e.g. "its section optimizer/lookahead_inject"), which a damaged
        copy's error names."""
        if self.handle_state is None:
            return
        from .. import state as state_format
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

    def sync_now(self):
        """The in-step sync's ``pull_together``, run now on the weights training trains."""
        if self._sync_now is not None:
            return self._sync_now()
        from ._sync import pull_together     # TF: not imported by the Keras 3 JAX / torch backends
        trained = self.variables.trained
        pairs = self.variables.pairs(trained)
        self.run(("sync",) + tuple(id(w) for w in trained),
                 lambda: pull_together(pairs, self.variables.alpha))


def trainable_weights(model):
    """``model.trainable_weights``, or none while the model is not built (Keras 2.4+
    raise for an unbuilt Sequential instead of answering)."""
    return list(model.trainable_weights) if getattr(model, "built", True) else []


def check_not_hooked(optimizer, method, innermost):
    """Refuse an optimizer that already carries another model's Lookahead."""
    target = innermost(optimizer)
    if method in vars(target):
        raise ModelNotReadyError(
            "The optimizer {!r} already drives another model's Lookahead. Each "
            "model needs its own optimizer: compile this one with a new "
            "optimizer instance.".format(getattr(target, "name", type(target).__name__)))


def joining(current, weights):
    """The ``weights`` a step that trains them takes new slow copies of: those not in
    ``current`` (the weights whose slow copies are current). Refuses a step with
    nothing to train."""
    if not weights:
        raise ModelNotReadyError(
            "The model has no trainable weights once built, so Lookahead has nothing "
            "to do. Make at least one layer trainable and compile again, or call "
            "la.remove() to train without Lookahead.")
    known = set(id(w) for w in current)
    return [w for w in weights if id(w) not in known]


class Checkpointed(object):
    """The slow copies and the step counter as a checkpoint dependency of the model.

    Not layer weights: ``model.weights``, ``get_weights`` and .h5 files stay as
    they were, while TF-format ``save_weights`` / ``load_weights`` and
    ``tf.train.Checkpoint(model=...)`` carry them. A slow copy is named by its
    weight's position in ``model.weights``, which is the same in a new process
    that builds the same model, whenever the copy is made.
    """

    def __init__(self, model, step):
        import tensorflow as tf
        self.model = model
        self.holder = tf.Module(name=CHECKPOINT_NAME)
        self.holder.step = step
        self._extra = {}

    def add(self, weight, slow, kind="slow"):
        """``kind`` "slow" or "momentum" (optimizer_state="pullback")."""
        position = [i for i, w in enumerate(self.model.weights) if w is weight]
        if position:
            name = "{}_{}".format(kind, position[0])
        else:           # a variable a custom train_step trains beside the model's own
            self._extra[kind] = self._extra.get(kind, -1) + 1
            name = "{}_extra_{}".format(kind, self._extra[kind])
        # Setting an attribute of a tracked Module also restores it from a
        # checkpoint whose restore is still pending (load_weights before the first step).
        setattr(self.holder, name, slow)

    def track(self):
        # Trackable._track_trackable (TF 1.14 - 2.21, Keras 2 and 3 on TF) adds a
        # checkpoint dependency without making a layer attribute.
        self.model._track_trackable(self.holder, name=CHECKPOINT_NAME, overwrite=True)

    def untrack(self):
        import tensorflow as tf
        self.model._track_trackable(tf.Module(name=CHECKPOINT_NAME), name=CHECKPOINT_NAME,
                                    overwrite=True)


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
    already (its model's files: _keras3_files, _h5_files): if the block raises, they and the
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
