"""TF 2.x with eager execution disabled (Keras 2 behind tf.keras): the blog's third variant.

From TF 2.3 on, a model built in graph mode is swapped to the v1 engine
(``training_v1.Model``), whose ``_make_train_function`` is TF 1.15's line for
line (checked against 2.3.4 and 2.15.1), so the builder is tf115's. What differs
here: the Keras backend module moved (``keras.backend``, ``keras.src.backend``,
``tf_keras.src.backend``; ``_graph.engine_backend`` finds it), and from TF 2.11
the default optimizers have no ``get_updates`` and cannot train in graph mode.
"""

from . import _graph

#: Lookahead under a tf.distribute strategy (refused in graph mode, see _graph.check).
DISTRIBUTE = False

#: Checkpoint formats that carry the Lookahead state by themselves (tests/test_state.py;
#: HDF5: tests/test_h5_files.py, _h5_files).
CHECKPOINT_FORMATS = ("model.save_weights(path) in TF format (no .h5)",
                      ".h5 / .hdf5 HDF5 (model.save, save_weights; restored by load_weights)")
from .tf115 import build_train_function
from ..errors import ModelNotReadyError


def check(model):
    _graph.check(model)
    if not hasattr(model.optimizer, "get_updates"):
        name = type(model.optimizer).__name__
        raise ModelNotReadyError(
            "{} has no get_updates(), so it cannot train a model in graph mode "
            "(TF >= 2.11 made the new optimizers the default). Compile with the "
            "legacy optimizer, e.g. optimizer=tf.keras.optimizers.legacy.{}(...), "
            "or keep eager execution enabled.".format(name, name))


def attach(model, k, alpha, optimizer_state="keep"):
    return _graph.attach(model, k, alpha, build_train_function,
                         optimizer_state=optimizer_state)
