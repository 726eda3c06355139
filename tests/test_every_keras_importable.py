"""Every Keras this Python can import builds a model, and the model's Keras picks the backend.

From TF 2.16 a process can import Keras 3 (``import keras``) and tf-keras (``import
tf_keras``) side by side, and ``tf.keras`` is one of them (tf-keras with
TF_USE_LEGACY_KERAS=1); on TF 1.x standalone ``import keras`` (2.2 / 2.3) sits beside
``tf.keras``. ``detect`` / ``inject`` follow the Keras that built the model, as the
README's dispatch table says. The tox envs with both Kerases run this module with and
without TF_USE_LEGACY_KERAS, in a graph and an eager process.
"""

import importlib
import importlib.util

import numpy as np
import pytest
from packaging.version import Version

import harness
from lookahead_inject import (LookaheadError, UnsupportedEnvironmentError, __main__ as cli,
                              detect, dispatch, environment, inject)

TF_VERSION = harness.ENVIRONMENT.tf_version
HERE = harness.ENVIRONMENT.describe()


def _import(package):
    if importlib.util.find_spec(package) is None:
        return None
    try:
        return importlib.import_module(package)
    except Exception:      # broken by its neighbours: no model of it to test
        return None


def _kerases():
    """name -> (the Keras module, or None, and why not)."""
    found = {}
    if harness.tf is None:
        found["tf.keras"] = (None, harness.without_tensorflow("no tf.keras"))
    else:
        found["tf.keras"] = (harness.tf.keras, None)

    keras = _import("keras")
    keras_version = getattr(keras, "__version__", None)
    if keras is None:
        found["keras3"] = (None, "keras is not installed beside {}".format(HERE))
    elif Version(keras_version).major < 3:
        found["keras3"] = (None, "`import keras` is keras {} beside {}: Keras 2, not Keras 3 "
                                 "(TF 2.16 brought Keras 3)".format(keras_version, HERE))
    else:
        found["keras3"] = (keras, None)

    tf_keras = _import("tf_keras") if harness.tf is not None else None
    if harness.tf is None:
        found["tf_keras"] = (None, harness.without_tensorflow(
            "tf-keras models train on TensorFlow only"))
    elif tf_keras is None:
        found["tf_keras"] = (None, "tf-keras is not installed beside {}".format(HERE))
    else:
        found["tf_keras"] = (tf_keras, None)

    standalone = (environment.installed_standalone_keras(TF_VERSION)
                  if TF_VERSION is not None else None)
    if standalone:
        found["standalone"] = (keras, None)
    else:
        found["standalone"] = (None, "no standalone keras 2.2 / 2.3 (import keras, TF 1.x "
                                     "only) beside {}".format(HERE))
    return found


KERASES = _kerases()
NAMES = sorted(KERASES)
BOTH = KERASES["keras3"][0] is not None and KERASES["tf_keras"][0] is not None


def keras_of(name):
    """The Keras module ``name`` stands for; skips the calling test when it is not here."""
    module, why_not = KERASES[name]
    if module is None:
        pytest.skip(why_not)
    return module


def kind(name):
    """"keras3", "tf_keras", "standalone" or "keras2" (tf.keras before TF 2.16): which
    Keras ``name`` is; tf.keras is whichever Keras its Model class comes from."""
    if name != "tf.keras":
        return name
    model_class = harness.tf.keras.Model
    for other in ("keras3", "tf_keras"):
        module = KERASES[other][0]
        if module is not None and model_class is module.Model:
            return other
    return "keras2"


def expected_backend(name):
    """The README's dispatch-table row for a model of ``name`` here; None where it has
    none (Keras 3 has no graph mode)."""
    which = kind(name)
    if which == "keras3":
        keras_backend = KERASES["keras3"][0].backend.backend()
        if keras_backend in ("jax", "torch"):
            return "keras3_" + keras_backend
        return None if harness.GRAPH else "keras3"
    if which == "standalone":
        return "keras22" if Version(KERASES[name][0].__version__) < Version("2.3") else "keras23"
    if TF_VERSION.major == 1:
        return "tf114" if harness.tf_is(1, 14) else "tf115"
    return "tf2_graph" if harness.GRAPH else "tf2_eager"


def skip_unless_it_trains(name):
    if expected_backend(name) is None:
        pytest.skip("keras {} has no graph mode ({}): inject refuses its models, see "
                    "test_only_lookahead_errors_come_out_of_inject_for_models_it_cannot_take"
                    .format(KERASES[name][0].__version__, HERE))


def sgd(name, module):
    if kind(name) == "keras3":
        return module.optimizers.SGD(learning_rate=0.1)
    if kind(name) == "standalone":
        return module.optimizers.SGD(lr=0.1)      # Keras 2.2 knows only lr=
    optimizers = module.optimizers
    # Keras 2.11+ graph mode needs the legacy optimizers (the new ones have no get_updates).
    if harness.GRAPH and hasattr(optimizers, "legacy"):
        optimizers = optimizers.legacy
    return optimizers.SGD(learning_rate=0.1)


def dense_model(name, compiled=True):
    module = keras_of(name)
    module.backend.clear_session()
    model = module.Sequential([module.layers.Dense(1, input_shape=(3,))])
    if compiled:
        model.compile(optimizer=sgd(name, module), loss="mse")
    return model


X, Y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")


@pytest.mark.parametrize("name", NAMES)
def test_detect_names_the_backend_of_the_keras_that_built_the_model(name):
    model = dense_model(name)
    expected = expected_backend(name)
    if expected is None:
        with pytest.raises(UnsupportedEnvironmentError, match="no graph mode"):
            detect(model)
    else:
        assert detect(model)["backend"] == expected


@pytest.mark.parametrize("name", NAMES)
def test_inject_trains_the_model_of_each_keras_with_lookahead_for_a_few_steps(name):
    model = dense_model(name)
    skip_unless_it_trains(name)
    start = model.get_weights()
    la = inject(model, k=2, alpha=0.0)      # alpha 0: step k=2 goes back to the start
    model.train_on_batch(X, Y)
    moved = model.get_weights()
    model.train_on_batch(X, Y)
    assert la.backend == expected_backend(name)
    assert not np.allclose(moved[0], start[0])
    harness.assert_trajectories_equal([model.get_weights()], [start], atol=1e-6)
    assert la.step == 2


@pytest.mark.parametrize("name", NAMES)
def test_only_lookahead_errors_come_out_of_inject_for_models_it_cannot_take(name):
    # What inject cannot take: an uncompiled model, a backend= that does not fit, and
    # (Keras 3 in graph mode) a model with no backend. Never AttributeError & co.
    keras_of(name)
    expected = expected_backend(name)
    other = next(b for b in ("tf2_eager", "keras3", "tf115") if b != expected)
    refused = [(dense_model(name, compiled=False), "auto"), (dense_model(name), other)]
    if expected is None:
        refused.append((dense_model(name), "auto"))
    for model, backend in refused:
        with pytest.raises(LookaheadError):
            inject(model, backend=backend)


@pytest.mark.parametrize("name", NAMES)
def test_sync_callback_is_a_callback_that_the_fit_of_the_models_own_keras_runs(name):
    model = dense_model(name)
    skip_unless_it_trains(name)
    start = model.get_weights()
    la = inject(model, k=5, alpha=0.0)
    callback = la.sync_callback(at="fit")
    assert isinstance(callback, keras_of(name).callbacks.Callback)
    # Two steps, no sync inside them (k=5); the callback's sync at the end of fit, with
    # alpha 0, puts the start back: only if the model's fit ran it.
    model.fit(X, Y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    assert la.step == 2
    harness.assert_trajectories_equal([model.get_weights()], [start], atol=1e-6)


def test_info_names_the_backend_a_model_of_keras_3_and_of_tf_keras_gets():
    if not BOTH:
        pytest.skip("Keras 3 and tf-keras are not both installed beside {}".format(HERE))
    if harness.GRAPH and kind("tf.keras") == "keras3":
        pytest.skip("{}: tf.keras is Keras {}, which has no graph mode, so info (run in an "
                    "eager process) refuses this one; the eager pass checks its lines".format(
                        HERE, KERASES["keras3"][0].__version__))
    lines = []
    assert cli.info(None, echo=lines.append) == 0
    for name, line in (("keras3", "import keras "), ("tf_keras", "import tf_keras ")):
        found = [text for text in lines if text.startswith(line)]
        assert len(found) == 1, lines
        expected = expected_backend(name)
        assert ("backend {} ".format(expected) if expected else "are refused") in found[0]
        assert KERASES[name][0].__version__ in found[0]

