"""TF 2.x with eager execution disabled (Keras 2 behind tf.keras): the blog's third variant.

From TF 2.3 on, a model built in graph mode is swapped to the v1 engine
(``training_v1.Model``), whose ``_make_train_function`` is TF 1.15's line for
line (checked against 2.3.4 and 2.15.1), so the builder is tf115's. What differs
here: the Keras backend module moved (``keras.backend``, ``keras.src.backend``,
``tf_keras.src.backend``; ``_train_function.engine_backend`` finds it), and from TF 2.11
the default optimizers have no ``get_updates`` and cannot train in graph mode.
"""

from ...errors import ModelNotReadyError
from . import _train_function
from .tf115 import build_train_function


def check(model):
    _train_function.check(model)
    if not hasattr(model.optimizer, "get_updates"):
        name = type(model.optimizer).__name__
        raise ModelNotReadyError(
            "{} has no get_updates(), so it cannot train a model in graph mode "
            "(TF >= 2.11 made the new optimizers the default). Compile with the "
            "legacy optimizer, e.g. optimizer=tf.keras.optimizers.legacy.{}(...), "
            "or keep eager execution enabled.".format(name, name))


BACKEND = _train_function.backend(build_train_function, check)
