"""What every backend's ``attach`` returns, and how the state rides along in checkpoints."""

import tensorflow as tf

#: Name of the Lookahead state in the model's TF-format checkpoints.
CHECKPOINT_NAME = "lookahead_inject"


class Attachment(object):
    """A model's Lookahead as installed by one backend.

    ``variables`` is the ``LookaheadVariables`` the training step updates;
    ``read(vars)`` / ``write(vars, values)`` move numpy values in and out of TF
    variables the way this TF version wants; ``detach()`` restores the model's
    own training; ``state_written()`` is told when the state was set from outside
    (the step may be 0 again, so the slow weights are to be taken again).

    The slow weights and the step counter become a checkpoint dependency of the
    model (not layer weights: ``model.weights``, ``get_weights`` and .h5 files
    stay as they were), so TF-format ``save_weights`` / ``load_weights`` and
    ``tf.train.Checkpoint(model=...)`` carry them.
    """

    def __init__(self, model, variables, read, write, detach, state_written=lambda: None):
        self.model, self.variables = model, variables
        self.read, self.write, self._detach = read, write, detach
        self.state_written = state_written
        holder = tf.Module(name=CHECKPOINT_NAME)
        holder.slow_weights = list(variables.slow)
        holder.step = variables.step
        if variables.momentum_cache:     # optimizer_state="pullback" (keeps old checkpoints' keys)
            holder.momentum_cache = list(variables.momentum_cache)
        self._track(holder)

    def detach(self):
        self._detach()
        self._track(tf.Module(name=CHECKPOINT_NAME))

    def _track(self, holder):
        # Trackable._track_trackable (TF 1.14 - 2.21, Keras 2 and 3 on TF) adds a
        # checkpoint dependency without making a layer attribute.
        self.model._track_trackable(holder, name=CHECKPOINT_NAME, overwrite=True)
