"""Loads Keras 2 HDF5 files written with Lookahead into plain models, in a process that
never imports lookahead_inject (see test_h5_files.py): what a user without the library
gets from them. tf.keras / tf-keras (TF_USE_LEGACY_KERAS=1 is inherited) and standalone
Keras 2.2 / 2.3.

    python h5_plain_load_worker.py DIR MODE KERAS

MODE: graph (eager execution disabled first) or eager; KERAS: tf.keras or standalone.
DIR holds m.h5 (model.save) and w.h5 (save_weights). Each way of loading them
(keras.models.load_model of m.h5; load_weights of m.h5 and of w.h5 into a plain model)
is recorded in DIR/plain_loads.npz: the weights, the optimizer's variables (load_model
only: load_weights restores none) and the text of every warning the load gave.
"""

import os
import sys

import numpy as np

# The tests' helpers are in tests/, above (common: numpy only, no lookahead_inject).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

DIR, MODE, KERAS = sys.argv[1:4]
WAYS = ("load_model_m_h5", "load_weights_m_h5", "load_weights_w_h5")

import tensorflow as tf  # noqa: E402

if MODE == "graph" and tf.executing_eagerly():
    tf.compat.v1.disable_eager_execution()
if KERAS == "standalone":
    import keras  # noqa: E402
else:
    keras = tf.keras


def values(variables):
    if MODE == "graph":
        return keras.backend.batch_get_value(list(variables))
    return [np.array(v.numpy()) for v in variables]


def optimizer_variables(optimizer):
    # OptimizerV2 (TF 1.x - 2.10, legacy) and standalone Keras: weights; Keras 2.11+'s
    # optimizers: variables (a property there).
    variables = getattr(optimizer, "weights", None)
    return list(variables if variables is not None else optimizer.variables)


def mlp():
    model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(4,)),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(), loss="mse")
    return model


def load(way):
    if way == "load_model_m_h5":
        return keras.models.load_model(os.path.join(DIR, "m.h5"))
    model = mlp()
    model.load_weights(os.path.join(DIR, "m.h5" if way == "load_weights_m_h5" else "w.h5"))
    return model


def optimizer_values(way, model):
    # load_weights restores no optimizer state in Keras 2.
    return values(optimizer_variables(model.optimizer)) if way == "load_model_m_h5" else []


def main():
    common.record_plain_loads(
        DIR, WAYS, load, optimizer_values,
        kept=lambda w: not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                                   FutureWarning)))


if __name__ == "__main__":
    main()
