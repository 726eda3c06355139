"""``model_to_estimator`` refuses a model that trains with Lookahead, at conversion time.

The Estimator trains its own clone of the model with a new optimizer, where
Lookahead does not run; before the refusal it trained plainly without a word
(TF 1.14 - 2.15, graph and eager). Plain models convert as before.
"""

import importlib

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
from lookahead_inject import inject
from lookahead_inject.errors import EstimatorNotSupportedError


def _skip_reason():
    if tf is None:
        return harness.without_tensorflow("no tf.keras.estimator")
    version = tf.__version__
    if harness.KERAS_3:
        return "TF {} with Keras 3 has no tf.keras.estimator".format(version)
    try:
        importlib.import_module("tensorflow_estimator")
    except ImportError:
        return ("TF {} has no tensorflow_estimator (its last release is 2.15), so "
                "model_to_estimator cannot run".format(version))
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

#: The public ways to the function: tf.keras (v1 or v2 API, as this TF exports it) and compat.v1.
ENTRIES = ("tf.keras.estimator", "tf.compat.v1.keras.estimator")


def model_to_estimator(entry):
    module = tf.keras.estimator if entry == "tf.keras.estimator" else tf.compat.v1.keras.estimator
    return module.model_to_estimator


def convert(entry, model, folder, positional=False):
    function = model_to_estimator(entry)
    if positional:
        return function(model, model_dir=str(folder))
    return function(keras_model=model, model_dir=str(folder))


def skip_standalone_conversion():
    harness.skip_standalone("models are no tf.keras Models: model_to_estimator refuses every "
                            "one of them (ValueError), so no plain conversion can be checked")


def assert_estimator(estimator):
    assert isinstance(estimator, (tf.compat.v1.estimator.Estimator, tf.estimator.Estimator))


@pytest.mark.parametrize("positional", [False, True], ids=["keyword", "positional"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_injected_model_refused(entry, positional, tmp_path):
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2)
    with pytest.raises(EstimatorNotSupportedError,
                       match=r"Lookahead.*model\.fit.*remove\(\)"):
        convert(entry, model, tmp_path / "estimator", positional)
    # Refused before the estimator touched anything (in TF 2.x eager it would
    # have swapped the model's optimizer for a legacy copy).
    assert not (tmp_path / "estimator").exists()


def test_refused_model_still_trains_with_lookahead(tmp_path):
    start = harness.start_weights()
    model = harness.mlp("sgd", start)
    optimizer = model.optimizer
    la = inject(model, k=2, alpha=0.0)
    with pytest.raises(EstimatorNotSupportedError):
        convert(ENTRIES[0], model, tmp_path)
    assert model.optimizer is optimizer
    x, y = harness.data()
    model.train_on_batch(x[:16], y[:16])
    model.train_on_batch(x[16:32], y[16:32])
    assert la.step == 2
    # alpha=0: step k=2 sets the fast weights back to the slow (start) ones.
    harness.assert_trajectories_equal([model.get_weights()], [start], atol=1e-6)


@pytest.mark.parametrize("entry", ENTRIES)
def test_plain_model_converts_while_another_is_injected(entry, tmp_path):
    skip_standalone_conversion()
    inject(harness.mlp("sgd"), k=2)
    assert_estimator(convert(entry, harness.mlp("sgd"), tmp_path))


def test_converts_after_remove(tmp_path):
    skip_standalone_conversion()
    model = harness.mlp("sgd")
    la = inject(model, k=2)
    la.remove()
    assert_estimator(convert(ENTRIES[0], model, tmp_path))


def test_plain_model_trains_in_the_estimator(tmp_path):
    """The wrapper hands plain calls on unchanged: the estimator trains as plain SGD."""
    skip_standalone_conversion()
    inject(harness.mlp("sgd"), k=2)
    start = harness.start_weights()
    model = harness.mlp("sgd", start)
    estimator = convert(ENTRIES[0], model, tmp_path)
    x, y = harness.data()
    name = model.input_names[0]
    estimator.train(lambda: tf.data.Dataset.from_tensors(({name: x[:16]}, y[:16])), steps=1)
    plain = harness.mlp("sgd", start)
    plain.train_on_batch(x[:16], y[:16])
    trained = {tuple(w.shape): w for w in _estimator_weights(estimator)}
    for want in plain.get_weights():
        np.testing.assert_allclose(trained[tuple(want.shape)], want, rtol=0, atol=1e-5)


def _estimator_weights(estimator):
    # Variable names differ by version ("dense/kernel", or object-graph keys like
    # "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"); the harness MLP's
    # weights all have distinct shapes, which is how they are matched.
    names = [n for n in estimator.get_variable_names()
             if n.split("/")[-1] in ("kernel", "bias")
             or n.endswith(("/kernel/.ATTRIBUTES/VARIABLE_VALUE", "/bias/.ATTRIBUTES/VARIABLE_VALUE"))]
    return [estimator.get_variable_value(n) for n in names]


def test_keras_model_path_converts(tmp_path):
    """A saved model file loads as a new model, which carries no Lookahead."""
    model = harness.mlp("sgd")
    inject(model, k=2)
    path = str(tmp_path / "model.h5")
    model.save(path)
    estimator = model_to_estimator(ENTRIES[0])(keras_model_path=path,
                                               model_dir=str(tmp_path / "estimator"))
    assert_estimator(estimator)
