"""Keras 2's HDF5 files carry the Lookahead state: tf.keras / tf-keras (TF 1.14 - 2.21,
graph and eager) and standalone Keras 2.2 / 2.3, ``model.save("m.h5")`` and
``model.save_weights("w.h5")``; ``model.load_weights`` of either file into an injected
model restores it.

Where: a uint8 dataset ``lookahead_inject`` at the file's root, holding the bytes
``la.save`` writes (state.py: header, slow weights, momentum copies, SHA-256), so it is
checked as that file is. Keras 2's HDF5 loaders read only what they wrote, by name:
``load_weights`` the groups its root attribute ``layer_names`` lists (or those of
``model_weights``), ``load_model`` ``model_weights``, ``optimizer_weights`` and the
root's attributes (TF 1.15 tensorflow/python/keras/saving/hdf5_format.py and
engine/network.py; Keras 2.15 keras/src/saving/legacy/hdf5_format.py, which also reads
``top_level_model_weights``; tf_keras 2.21 tf_keras/src/saving/legacy/hdf5_format.py,
the same; standalone keras 2.2.5 keras/engine/saving.py and network.py). Keras 2.13+'s
``.weights.h5`` (saving_lib's H5IOStore) reads the groups of the paths it walks, never a
root dataset of another name. So the dataset is never read by Keras: a file written with
Lookahead loads into a plain model, also in a process without lookahead_inject, with all
its weights and the optimizer's own state; and a file without it makes Lookahead start
again at the next step from the loaded weights, with one log line (``Attachment.restart``,
as Keras 3's files, common.keras3_files).

How: instance attributes on the model wrap ``save``, ``save_weights`` and
``load_weights`` (and ``la.remove()`` takes them back). After Keras has written an HDF5
file (and closed it) the dataset is added with h5py; after Keras has loaded one, it is
read. TF-format checkpoints are left alone: the model's checkpoint dependency carries the
state there (common.tf_checkpoint.Checkpointed). A file Keras writes that can hold no state
(Keras 2.13+'s ``.keras`` zip) gets one warning at save time, saying how to keep it, and
its ``load_weights`` makes Lookahead start again from its weights, as a plain file does.
"""

import inspect
import os
import warnings

import numpy as np

from ...errors import NoLookaheadStateWarning
from .attachment import CHECKPOINT_NAME, extending

#: The files that carry the state (what ``detect()`` lists; tests/test_h5_files.py).
FORMAT = ".h5 / .hdf5 HDF5 (model.save, save_weights; restored by load_weights)"
#: The dataset at the file's root.
DATASET = CHECKPOINT_NAME
WHERE = "its dataset /{}".format(DATASET)
#: The names Keras 2 takes for HDF5 (``.keras`` too up to TF 2.12; from Keras 2.13 a
#: ``.keras`` path is a zip, which is checked on disk).
SUFFIXES = (".h5", ".hdf5", ".keras")


def _path(filepath):
    """``filepath`` as a str, or None for what is no path (an h5py File / Group)."""
    if isinstance(filepath, str):
        return filepath
    if hasattr(filepath, "__fspath__"):
        path = os.fspath(filepath)
        return path if isinstance(path, str) else None
    return None


def _group(filepath):
    """The h5py File or Group the caller passed instead of a path, else None."""
    try:
        import h5py
    except ImportError:
        return None
    return filepath if isinstance(filepath, h5py.Group) else None


def _is_hdf5_file(path):
    if not os.path.isfile(path):
        return False
    import h5py
    return bool(h5py.is_hdf5(path))


def _is_zip_file(path):
    import zipfile
    return os.path.isfile(path) and zipfile.is_zipfile(path)


def _arguments(model, method, filepath, args, kwargs):
    """The call's arguments by name: each Keras orders them its own way (TF 2: save(filepath,
    overwrite, include_optimizer, save_format, ...), Keras 2.13+: save(filepath, overwrite,
    save_format, **kwargs); load_weights' by_name second in TF, third in Keras 2.13+). Read
    from the Keras class's method: the model's own may be a backend's (*args, **kwargs)
    wrapper (graph._train_function.attach's load_weights)."""
    try:
        signature = inspect.signature(getattr(type(model), method).__get__(model))
        bound = signature.bind(filepath, *args, **kwargs)
    except (AttributeError, TypeError, ValueError):
        return dict(kwargs)
    arguments = dict(bound.arguments)
    for name, parameter in signature.parameters.items():
        if parameter.kind == parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(name, {}))
    return arguments


class Files(object):
    """A model's Lookahead state in and out of its Keras 2 HDF5 files."""

    def __init__(self, model, attachment):
        self.model, self.attachment = model, attachment

    # -- writing --------------------------------------------------------------------

    def saved(self, filepath, arguments, whole_model):
        """After Keras' ``save`` / ``save_weights`` wrote ``filepath``."""
        if whole_model and arguments.get("include_optimizer", True) is False:
            return      # no training state asked for: none added, nothing to warn about
        group = _group(filepath)
        if group is not None:         # the caller's open h5py File / Group
            self.write(group)
            return
        path = _path(filepath)
        if path is None:
            return
        save_format = str(arguments.get("save_format") or "").lower()
        hdf5_named = path.lower().endswith(SUFFIXES) or save_format in ("h5", "hdf5")
        if hdf5_named and _is_hdf5_file(path):
            import h5py
            with h5py.File(path, "r+") as f:
                self.write(f)
        elif path.lower().endswith(".keras") and _is_zip_file(path):
            # Keras 2.13+ (TF 2.13 - 2.15, tf-keras) write a ".keras" path as a zip of
            # config and weights, whose loader rebuilds the model from the config alone.
            warnings.warn(
                "{} holds no Lookahead state: the Keras {} format (.keras) has no place "
                "for it. To resume Lookahead, also save it with la.save(path) (la.load "
                "after load_weights), or save the model as .h5, whose files carry "
                "it.".format(path, _keras_version(self.model)), NoLookaheadStateWarning,
                stacklevel=3)

    def write(self, f):
        data = self.attachment.state_bytes()
        if data is None:
            return
        if DATASET in f:
            # A layer named "lookahead_inject" took the name (save_weights writes a group
            # per layer at the root): the file stays as Keras wrote it.
            warnings.warn(
                "The HDF5 file holds no Lookahead state: a layer of the model is named "
                "{!r}, the name of the state's dataset. Save the state with la.save(path), "
                "or rename the layer.".format(DATASET), NoLookaheadStateWarning, stacklevel=4)
            return
        f.create_dataset(DATASET, data=np.frombuffer(data, np.uint8))

    # -- reading --------------------------------------------------------------------

    def loaded(self, filepath, arguments):
        """After Keras' ``load_weights`` loaded ``filepath``."""
        group = _group(filepath)
        if group is not None:
            self.read(group, arguments)
            return
        path = _path(filepath)
        if path is None or os.path.exists(path + ".index"):
            return      # a TF checkpoint: the model's checkpoint dependency restored the state
        if path.lower().endswith(".keras") and _is_zip_file(path):
            # Keras 2.13+'s zip never holds the state: Lookahead starts from its weights, as
            # from any file without it, rather than going on with the slow weights of before.
            self.attachment.restart()
            return
        # An HDF5 file at exactly the path Keras loaded (TF 1.15 - 2.12 read a path that is
        # no TF checkpoint as HDF5, whatever its name).
        if _is_hdf5_file(path):
            import h5py
            with h5py.File(path, "r") as f:
                self.read(f, arguments)

    def read(self, f, arguments):
        if arguments.get("by_name"):
            # By layer name: part of the file into another model, whose Lookahead state
            # the file's (another model's) cannot be; the loaded weights are its start.
            self.attachment.restart()
            return
        import h5py
        # A group of that name is a layer's (save_weights writes a group per layer).
        if DATASET in f and isinstance(f[DATASET], h5py.Dataset):
            self.attachment.restore_bytes(np.asarray(f[DATASET], np.uint8).tobytes(), WHERE)
        else:
            self.attachment.restart()


def read_state(path):
    """The Lookahead state bytes in the Keras 2 HDF5 file ``path``, or None when it has
    none (written without Lookahead, or not HDF5)."""
    if not _is_hdf5_file(path):
        return None
    import h5py
    with h5py.File(path, "r") as f:
        if DATASET in f and isinstance(f[DATASET], h5py.Dataset):
            return np.asarray(f[DATASET], np.uint8).tobytes()
    return None


def _keras_version(model):
    from ...environment import model_keras_module
    return getattr(model_keras_module(model), "__version__", "2")


def install(model, attachment):
    """Wrap an attached Keras 2 model's ``save``, ``save_weights`` and ``load_weights`` so
    its HDF5 files carry the Lookahead state; ``attachment.detach`` takes them away again.
    Returns ``attachment`` (the one line each Keras 2 backend's ``attach`` adds)."""
    files = Files(model, attachment)
    with extending(attachment) as undo:
        # The methods as they are now: the backend's own wrappers included (graph._train_function's
        # load_weights, which restarts the step-0 check after a load).
        original_save, original_save_weights = model.save, model.save_weights
        original_load_weights = model.load_weights

        def save(filepath, *args, **kwargs):
            result = original_save(filepath, *args, **kwargs)
            files.saved(filepath, _arguments(model, "save", filepath, args, kwargs), True)
            return result

        def save_weights(filepath, *args, **kwargs):
            result = original_save_weights(filepath, *args, **kwargs)
            files.saved(filepath, _arguments(model, "save_weights", filepath, args, kwargs),
                        False)
            return result

        def load_weights(filepath, *args, **kwargs):
            result = original_load_weights(filepath, *args, **kwargs)
            files.loaded(filepath, _arguments(model, "load_weights", filepath, args, kwargs))
            return result

        for name, wrapper, original in (("save", save, original_save),
                                        ("save_weights", save_weights, original_save_weights),
                                        ("load_weights", load_weights, original_load_weights)):
            wrapper.__doc__ = original.__doc__
            undo.set_attribute(model, name, wrapper)
    return attachment


__all__ = ["install", "read_state"]
