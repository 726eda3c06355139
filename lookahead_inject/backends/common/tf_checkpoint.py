"""The Lookahead state of the TF backends as a checkpoint dependency of the model: what
TF-format ``save_weights`` and ``tf.train.Checkpoint(model=...)`` carry."""

import contextlib

import tensorflow as tf

from .attachment import CHECKPOINT_NAME

#: The checkpoint formats this carries the state in (what ``detect()`` lists; tests/test_state.py).
TF_WEIGHTS = "model.save_weights(path) in TF format (no .h5)"
TF_CHECKPOINT = "tf.train.Checkpoint(model=model, optimizer=model.optimizer)"


class Checkpointed(object):
    """The slow copies and the step counter as a checkpoint dependency of the model.

    Not layer weights: ``model.weights``, ``get_weights`` and .h5 files stay as
    they were, while TF-format ``save_weights`` / ``load_weights`` and
    ``tf.train.Checkpoint(model=...)`` carry them. A slow copy is named by its
    weight's position in ``model.weights``, which is the same in a new process
    that builds the same model, whenever the copy is made.
    """

    def __init__(self, model, step):
        self.model = model
        self.holder = tf.Module(name=CHECKPOINT_NAME)
        self.holder.step = step
        self._extra = {}
        self._batch = None      # within same_weights: {"positions": ...} once read
        self._restored = set()  # ids of the copies a pending restore filled when added

    @contextlib.contextmanager
    def same_weights(self):
        """Slow copies made inside it are made while the model's weights stay as they are:
        their positions are read once, at the first (an unbuilt model has no weights to
        read before). ``model.weights`` walks every layer: read per slow copy, it made
        ``inject`` quadratic in the number of weights (issue #22, benchmarks/RESULTS.md)."""
        if self._batch is not None:
            yield
            return
        self._batch = {}
        try:
            yield
        finally:
            self._batch = None

    def add(self, weight, slow, kind="slow"):
        """``kind`` "slow" or "momentum" (optimizer_state="pullback"). A checkpoint loaded
        before the copy existed (a model without weights at inject, then TF-format
        ``load_weights``, ``tf.train.Checkpoint.restore`` or ``BackupAndRestore``) fills it
        here: see ``restored``."""
        if self._batch is None:
            positions = _positions(self.model.weights)
        else:
            if "positions" not in self._batch:
                self._batch["positions"] = _positions(self.model.weights)
            positions = self._batch["positions"]
        if id(weight) in positions:
            name = "{}_{}".format(kind, positions[id(weight)])
        else:           # a variable a custom train_step trains beside the model's own
            self._extra[kind] = self._extra.get(kind, -1) + 1
            name = "{}_extra_{}".format(kind, self._extra[kind])
        # Setting an attribute of a tracked Module also restores it from a checkpoint
        # whose restore is still pending for that name: Trackable._deferred_dependencies
        # (TF 1.14 - 2.21) holds those, and setattr takes the name's out of it.
        if _restores_now(self.holder._deferred_dependencies.get(name, ())):
            self._restored.add(id(slow))
        setattr(self.holder, name, slow)

    def restored(self, slow):
        """Whether a checkpoint filled ``slow`` when it was added: its value is the
        checkpoint's, not to be taken from its weight again (the join,
        ``LookaheadVariables.prepare``)."""
        return id(slow) in self._restored

    def track(self):
        # Trackable._track_trackable (TF 1.14 - 2.21, Keras 2 and 3 on TF) adds a
        # checkpoint dependency without making a layer attribute.
        self.model._track_trackable(self.holder, name=CHECKPOINT_NAME, overwrite=True)

    def untrack(self):
        self.model._track_trackable(tf.Module(name=CHECKPOINT_NAME), name=CHECKPOINT_NAME,
                                    overwrite=True)


def _restores_now(pending):
    """Whether the pending restores of a name (``CheckpointPosition``s) write the variable
    as it is tracked: eagerly they do; in a graph only a restore that runs its new ops as
    they come (Keras' TF-format ``load_weights``: ``new_restore_ops_callback``, TF 1.14 -
    2.21). A graph's ``tf.train.Checkpoint.restore`` leaves them to a later
    ``run_restore_ops()``, which may never come: such a copy joins as if none were pending."""
    if not pending:
        return False
    if tf.executing_eagerly():
        return True
    return any(getattr(position.checkpoint, "new_restore_ops_callback", None) is not None
               for position in pending)


def _positions(weights):
    """{id(weight): its first position in ``weights``}."""
    positions = {}
    for i, weight in enumerate(weights):
        positions.setdefault(id(weight), i)
    return positions


class NotCheckpointed(object):
    """For slow copies that ride in checkpoints some other way (the Keras 2
    ``LookaheadOptimizer``'s are its slots)."""

    @staticmethod
    def add(weight, slow, kind="slow"):
        pass

    @staticmethod
    def restored(slow):
        return False

    @staticmethod
    def same_weights():
        return contextlib.nullcontext()


class CheckpointedStore(object):
    """What the TF backends' stores of slow copies (the graph family's ``GraphStore``,
    the hook family's ``EagerStore``) share: their copies ride in ``checkpointed``."""

    def __init__(self, checkpointed):
        self.checkpointed = checkpointed

    def making_slow_copies(self):
        """Around making several slow copies at once (the model's weights stay as they are)."""
        return self.checkpointed.same_weights()

    def restored(self, slow):
        """Whether a checkpoint filled the slow copy ``slow`` when it was made."""
        return self.checkpointed.restored(slow)
