"""``load_model``: a model from a Keras file that trains on with the Lookahead the file holds.

Why not ``keras.saving.load_model`` itself: a Keras file written with Lookahead must also
load in a process without lookahead_inject (so its config names only Keras' own classes),
and such a file gives this process no hook into Keras' loader. Keras 3.15 refuses a
registered name on a built-in class (``serialization_lib._assert_no_registered_name_for_builtin``)
and cannot import a module of ours where we are not installed; the state rides in the file
beside the optimizer's (``backends/common/keras3_files``, ``h5_files``), where Keras' loader passes it by.
So this function loads with Keras, reads the state with Keras' ``load_weights`` (Keras 3) or
h5py (Keras 2 HDF5), injects with the file's k, alpha and optimizer_state and restores it.
"""

import os
import warnings

from . import state
from .environment import detect_environment, keras_module, model_flavour
from .environment import KERAS_3, KERAS_3_JAX, KERAS_3_TORCH
from .errors import InvalidArgumentError, NoLookaheadStateWarning


def load_model(path, loader=None, **kwargs):
    """Load a Keras model saved from a model with Lookahead, and give it that Lookahead.

    ``path`` is a file Keras' ``model.save`` wrote (Keras 3 ``.keras``; Keras 2 /
    tf-keras / standalone Keras ``.h5``), also by ``ModelCheckpoint``. ``loader`` is the
    Keras function that loads it (default: ``load_model`` of ``tf.keras``, or of Keras 3
    where it runs without TensorFlow; pass ``keras.models.load_model`` for standalone
    Keras 2.2 / 2.3, or ``tf_keras.models.load_model`` beside Keras 3); ``kwargs`` go to it.

    The model trains on with the file's k, alpha, optimizer_state, step count and slow
    weights, exactly as the saved one would have: ``lookahead_inject.of(model)`` is its
    handle, and ``inject(model)`` with the same k, alpha and optimizer_state returns it. A
    file without Lookahead state gives the model as Keras loads it, with a
    ``NoLookaheadStateWarning``.

    >>> import os, tempfile, numpy as np, tensorflow as tf
    >>> import lookahead_inject
    >>> model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    >>> model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    >>> la = lookahead_inject.inject(model, k=4, alpha=0.5)
    >>> _ = model.fit(np.ones((6, 3)), np.zeros((6, 1)), batch_size=2, verbose=0)
    >>> keras_3 = lookahead_inject.detect(model)["keras"].startswith("keras 3")
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras" if keras_3 else "m.h5")
    >>> model.save(path)
    >>> loaded = lookahead_inject.load_model(path)
    >>> restored = lookahead_inject.of(loaded)
    >>> restored.k, restored.alpha, restored.step
    (4, 0.5, 3)
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(os.fspath(path)):
        raise InvalidArgumentError(
            "load_model({!r}): no file or folder there. Pass the path model.save() (or "
            "ModelCheckpoint) wrote.".format(path))
    path = os.fspath(path)
    if loader is None:
        loader = keras_module(detect_environment().tf_version).models.load_model
    model = loader(path, **kwargs)
    data = _state_bytes(model, path)
    if data is None:
        warnings.warn(
            "{} holds no Lookahead state (saved without Lookahead, or in a format that has "
            "no place for it): the model is as Keras loaded it. Start Lookahead with "
            "lookahead_inject.inject(model, k, alpha), or restore a state file with "
            "la.load(path).".format(path), NoLookaheadStateWarning, stacklevel=2)
        return model
    lookahead_state = state.from_bytes(data, path)
    from .lookahead import inject
    handle = inject(model, k=lookahead_state["k"], alpha=lookahead_state["alpha"],
                    optimizer_state=lookahead_state.get("optimizer_state", "keep"))
    handle.set_state(lookahead_state)
    return model


def _state_bytes(model, path):
    flavour = model_flavour(model)
    environment = detect_environment(model)
    if (flavour is not None and flavour[0] == KERAS_3) or \
            environment.keras in (KERAS_3, KERAS_3_JAX, KERAS_3_TORCH):
        from .backends.common import keras3_files
        return keras3_files.read_state(model, path)
    from .backends.common import h5_files
    return h5_files.read_state(path)


__all__ = ["load_model"]
