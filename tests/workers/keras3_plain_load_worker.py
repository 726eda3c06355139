"""Loads Keras 3 files written with Lookahead into plain models, in a process that never
imports lookahead_inject (see test_keras3_keras_files.py): what a user without the
library gets from them. Keras 3 on any backend (TensorFlow, JAX, PyTorch).

    python keras3_plain_load_worker.py DIR

DIR holds m.keras and w.weights.h5. Each way of loading them (keras.saving.load_model of
m.keras; load_weights of m.keras and of w.weights.h5 into a plain model with a built
optimizer) is recorded in DIR/plain_loads.npz: the weights, the optimizer's variables,
and the text of every warning the load gave.
"""

import os
import sys

import numpy as np

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402
import keras3_support as support  # noqa: E402

DIR = sys.argv[1]
WAYS = ("load_model_keras", "load_weights_keras", "load_weights_weights_h5")


def load(way):
    import keras
    if way == "load_model_keras":
        return keras.saving.load_model(os.path.join(DIR, "m.keras"))
    model = support.mlp("momentum")
    # Keras 3 loads an optimizer's saved variables only into a built optimizer.
    model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(DIR, "m.keras" if way == "load_weights_keras"
                                    else "w.weights.h5"))
    return model


def optimizer_values(way, model):
    from keras import ops
    return [np.array(ops.convert_to_numpy(v.value)) for v in model.optimizer.variables]


def main():
    common.record_plain_loads(DIR, WAYS, load, optimizer_values)


if __name__ == "__main__":
    main()
