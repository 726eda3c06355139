"""Models and data for the tests of Keras 3 on every backend (TensorFlow, JAX,
PyTorch): test_keras3_midfit.py, test_keras3_files.py, test_keras3_distribution.py
and their subprocess workers.

``import keras`` only, never TensorFlow, so it runs in the envs without it. The
model and rates are harness.py's (Dense(8, tanh) -> Dense(1)), the data and the
expectation common.py's.
"""

import numpy as np

# The run's constants, data, expectations and asserts are common.py's (no TensorFlow, no
# lookahead_inject at import), re-exported for the Keras 3 tests and workers.
from common import (BATCH, EPOCHS, N_IN, STEPS, STEPS_PER_EPOCH,  # noqa: F401
                    assert_close, data, epoch_batches, expected_with_slow, start_weights)


#: The Lookahead backends that serve Keras 3 (TF, JAX, PyTorch).
KERAS3_BACKENDS = ("keras3", "keras3_jax", "keras3_torch")


def keras3_backend_or_skip_reason():
    """(lookahead backend, None) where Keras 3 is what the tests build with, else
    (None, the reason to skip naming the Keras that runs here)."""
    from lookahead_inject import detect
    try:
        seen = detect()
    except Exception as error:     # no backend fits: the tests of inject say why
        return None, "no Lookahead backend here ({})".format(error)
    if seen["backend"] not in KERAS3_BACKENDS:
        return None, "{} (backend {}) is not Keras 3, which these tests are about".format(
            seen["keras_label"], seen["backend"])
    return seen["backend"], None


def optimizer(name):
    """A fresh Keras 3 optimizer matching reference.OPTIMIZERS[name]."""
    import keras
    return {
        "sgd": lambda: keras.optimizers.SGD(learning_rate=0.1),
        "momentum": lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(learning_rate=0.01),
        # Not in reference.py: for the tests of files, where two optimizers save sections.
        "loss_scaled_adam": lambda: keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(learning_rate=0.01)),
    }[name]()


def mlp(opt="sgd", weights=None, **compile_kwargs):
    """Dense(8, tanh) -> Dense(1), compiled with MSE, weights set to ``weights``."""
    import keras
    model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=optimizer(opt), loss="mse", **compile_kwargs)
    if weights is not None:
        model.set_weights([np.asarray(w, "float32") for w in weights])
    return model
