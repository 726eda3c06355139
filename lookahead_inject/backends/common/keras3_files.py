"""Keras 3's own files carry the Lookahead state, on every Keras 3 backend (TensorFlow,
JAX, PyTorch): ``model.save(".keras")``, ``save_weights(".weights.h5")`` and what
``ModelCheckpoint`` and ``BackupAndRestore`` write with them; ``load_weights`` of an
injected model restores it.

Keras 3 (saving_lib ``_save_state`` / ``_load_state``, 3.15) saves a model by walking its
saveable children (layers, the optimizer, and every attribute of those that is a Keras
saveable) and calling each one's ``save_own_variables(store)`` with a section of the
weights file named by its attribute path; loading walks the loading model the same way,
so a section of an object the model does not have is never read, and an object whose
section the file lacks gets an empty one. So the state has a section of its own,
``optimizer/lookahead_inject``: a ``LookaheadSection`` set as the public attribute
``lookahead_inject`` of the model's optimizer (and of each optimizer a later
``compile()`` brings). The optimizer's own section stays as Keras writes it, so its
variable count never changes: a file written with Lookahead loads into a plain model
(which never reads the extra section, and needs no lookahead_inject to load it) and a
plain file into an injected model, both with the optimizer's own state.

The section holds one uint8 array, ``state``: the bytes ``la.save`` writes to its file
(state.py: header, slow weights, momentum copies, SHA-256), so it is checked as that
file is. A file without it (written without Lookahead) makes Lookahead start again from
the loaded weights at the next step, and says so in one log line.
"""

import keras
import numpy as np

from .attachment import CHECKPOINT_NAME, extending

#: The files that carry the state (what ``detect()`` lists; tests/test_keras3_keras_files.py).
FORMATS = (".keras (model.save, ModelCheckpoint)",
           ".weights.h5 (save_weights, ModelCheckpoint, BackupAndRestore)")
#: The optimizer's attribute, so the file section's name under the optimizer's.
ATTRIBUTE = CHECKPOINT_NAME
KEY = "state"


class LookaheadSection(keras.losses.Loss):
    """The Lookahead state's section in Keras 3's files.

    A ``keras.losses.Loss`` because it is the lightest public class Keras 3 saves
    (saving_lib walks ``KerasSaveable``s): not a Layer, so never in ``model.layers`` or a
    summary; not a Variable, so the optimizer's tracker leaves it out of
    ``optimizer.variables``; and not a TensorFlow ``Trackable``, so the optimizer's TF
    checkpoint dependencies stay as they are (the model's own dependency carries the
    state there, common.tf_checkpoint.Checkpointed). It is never used as a loss.
    """

    def __init__(self, files):
        super().__init__(name=ATTRIBUTE)
        # Not the model, the handle or a list: saving_lib reads every attribute and would
        # walk into a saveable or a container found there.
        self.files = files

    def call(self, y_true, y_pred):
        raise TypeError("The Lookahead file section of the optimizer is not a loss.")

    def save_own_variables(self, store):
        data = self.files.state_bytes()
        if data is not None:
            store[KEY] = np.frombuffer(data, np.uint8)

    def load_own_variables(self, store):
        if KEY in list(store.keys()):
            self.files.restore(np.asarray(store[KEY], np.uint8).tobytes())
        else:
            self.files.restart()


class Files(object):
    """A model's Lookahead state in and out of its Keras 3 files, through the handle's
    own ``get_state`` / ``set_state`` (``Attachment.bind``)."""

    def __init__(self, model, attachment):
        self.model, self.attachment = model, attachment
        self.section = LookaheadSection(self)
        self.optimizer = None       # the optimizer that holds the section

    def place(self):
        """On the model's (current) optimizer, and off the one it held before."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is self.optimizer:
            return
        self.remove()
        if optimizer is not None:
            setattr(optimizer, ATTRIBUTE, self.section)
            self.optimizer = optimizer

    def remove(self):
        if self.optimizer is not None and vars(self.optimizer).get(ATTRIBUTE) is self.section:
            delattr(self.optimizer, ATTRIBUTE)
        self.optimizer = None

    # The state's bytes, restore and restart are the attachment's, shared with the HDF5
    # files of Keras 2 (common.h5_files).
    def state_bytes(self):
        return self.attachment.state_bytes()

    def restore(self, data):
        self.attachment.restore_bytes(data, "its section optimizer/{}".format(ATTRIBUTE))

    def restart(self):
        self.attachment.restart()


def install(model, attachment):
    """Give an attached Keras 3 model's optimizer the Lookahead file section, and each
    optimizer a later ``compile()`` brings; ``attachment.detach`` takes it away again.
    Returns ``attachment`` (the one line each Keras 3 backend's ``attach`` adds)."""
    files = Files(model, attachment)
    with extending(attachment) as undo:
        undo.add(files.remove)
        files.place()
        original_compile = model.compile       # the backend's, which keeps the hook

        def compile_keeping_lookahead_section(*args, **kwargs):
            try:
                return original_compile(*args, **kwargs)
            finally:
                files.place()

        compile_keeping_lookahead_section.__doc__ = original_compile.__doc__
        undo.set_attribute(model, "compile", compile_keeping_lookahead_section)
    return attachment


class _Capture(object):
    """A ``Files`` stand-in that keeps the bytes a section loads (``read_state``)."""

    def __init__(self):
        self.data = None

    def restore(self, data):
        self.data = data

    def restart(self):
        self.data = None


def read_state(model, path):
    """The Lookahead state bytes in the Keras 3 file ``path`` (``.keras``,
    ``.weights.h5``) that ``model`` was just loaded from, or None when it has none.

    Read by Keras' own loader, so whatever layout this Keras version gives the file: a
    section on the model's optimizer for one ``load_weights`` of the same file, which
    puts back the values the model already holds.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    capture = _Capture()
    setattr(optimizer, ATTRIBUTE, LookaheadSection(capture))
    try:
        model.load_weights(path)
    finally:
        delattr(optimizer, ATTRIBUTE)
    return capture.data


__all__ = ["install", "read_state", "LookaheadSection"]
