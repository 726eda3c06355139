"""Standalone Keras (`import keras` 2.2 / 2.3 on TF 1.x): the model decides which Keras,
and so which backend, a model gets. The whole suite also runs on standalone-Keras models
in the py37-tf11x-keras2xx tox envs (LOOKAHEAD_TEST_KERAS=standalone, see harness.py)."""

import numpy as np
import pytest
from packaging.version import Version

import harness
from lookahead_inject import UnsupportedEnvironmentError, detect, dispatch, inject
from lookahead_inject import environment as env

standalone_only = pytest.mark.skipif(
    not harness.STANDALONE, reason="{}: the standalone-Keras tox envs run this (they install "
    "keras 2.2 / 2.3 and set LOOKAHEAD_TEST_KERAS=standalone)".format(harness.ENVIRONMENT.describe()))


def standalone(tf_version, keras_version, mode=env.GRAPH):
    return env.Environment(Version(tf_version), env.KERAS_STANDALONE, keras_version, mode, None)


@pytest.mark.parametrize("tf_version,keras_version,backend", [
    ("1.14.0", "2.2.4", "keras22"), ("1.14.0", "2.2.5", "keras22"), ("1.15.5", "2.2.5", "keras22"),
    ("1.14.0", "2.3.1", "keras23"), ("1.15.5", "2.3.1", "keras23"),
])
def test_each_standalone_keras_gets_its_own_row(tf_version, keras_version, backend):
    assert dispatch.choose_backend(standalone(tf_version, keras_version)) == backend


@pytest.mark.parametrize("tf_version,keras_version,mode,fix", [
    ("2.1.4", "2.3.1", env.EAGER, "from tensorflow import keras"),
    ("2.0.4", "2.3.1", env.GRAPH, "from tensorflow import keras"),
    ("1.14.0", "2.1.6", env.GRAPH, "keras==2.2.5 or keras==2.3.1"),
])
def test_unsupported_standalone_keras_is_refused_with_the_fix(tf_version, keras_version, mode, fix):
    with pytest.raises(UnsupportedEnvironmentError) as error:
        dispatch.choose_backend(standalone(tf_version, keras_version, mode))
    assert "keras {} (standalone)".format(keras_version) in str(error.value)
    assert fix in str(error.value)


def test_detect_names_the_keras_that_builds_the_model():
    found = detect(harness.probe_model())
    assert found["keras"] == harness.ENVIRONMENT.keras
    if harness.STANDALONE:
        assert found["keras_label"] == "keras {} (standalone)".format(harness.keras.__version__)
        assert found["backend"] == ("keras22" if harness.keras.__version__.startswith("2.2")
                                    else "keras23")
        # HDF5 only, whose files carry the state (test_h5_files.py)
        assert found["checkpoints"] == [
            ".h5 / .hdf5 HDF5 (model.save, save_weights; restored by load_weights)"]


@standalone_only
def test_the_model_decides_between_keras_and_tf_keras_in_one_process():
    import tensorflow as tf
    legacy = harness.mlp("sgd", harness.start_weights())
    assert detect(legacy)["backend"] in ("keras22", "keras23")
    tf.keras.backend.clear_session()      # tf.keras' own session, on a graph of its own
    plain = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    plain.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    assert detect(plain)["backend"] in ("tf114", "tf115")
    assert detect()["backend"] in ("tf114", "tf115")     # without a model: tf.keras
    la = inject(plain, k=2, alpha=0.0)
    start = plain.get_weights()
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    plain.train_on_batch(x, y)
    plain.train_on_batch(x, y)                   # step k=2, alpha 0: back to the start
    harness.assert_trajectories_equal([plain.get_weights()], [start], atol=1e-7)
    assert la.backend in ("tf114", "tf115")


@standalone_only
def test_inject_leaves_the_users_variables_as_keras_made_them():
    model = harness.mlp("sgd", harness.start_weights())
    before = [(type(w), w.dtype) for w in model.weights]
    inject(model)
    model.train_on_batch(*harness.epoch_batches(*harness.data())[0])
    assert [(type(w), w.dtype) for w in model.weights] == before


@standalone_only
def test_info_says_which_backend_standalone_keras_models_get():
    from lookahead_inject import __main__ as cli
    lines = []
    assert cli.info(None, echo=lines.append) == 0
    row = [line for line in lines if line.startswith("import keras")]
    assert len(row) == 1, lines
    assert "keras {} (standalone)".format(harness.keras.__version__) in row[0]
    assert "backend keras2" in row[0]
