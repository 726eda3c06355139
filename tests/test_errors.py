"""Bad input gets a clear error naming the problem and the fix, and the model is left as it was."""

import subprocess
import sys

import pytest
from packaging.version import Version

import harness
import lookahead_inject
from lookahead_inject import Lookahead, inject
from lookahead_inject import environment as env
from lookahead_inject.errors import (InvalidArgumentError, ModelNotReadyError,
                                     UnsupportedEnvironmentError)


def assert_still_plain(model):
    """A refused inject changed nothing: the model trains exactly as plain SGD."""
    x, y = harness.data()
    before = model.get_weights()
    model.train_on_batch(x[:16], y[:16])
    plain = harness.mlp("sgd", before)
    plain.train_on_batch(x[:16], y[:16])
    harness.assert_trajectories_equal([model.get_weights()], [plain.get_weights()], atol=1e-6)
    # ...and a correct inject still works afterwards.
    assert inject(model, k=2).step == 0


def test_model_not_compiled():
    model = harness.keras.Sequential([harness.keras.layers.Dense(1, input_shape=(3,))])
    with pytest.raises(ModelNotReadyError, match=r"not compiled.*model\.compile"):
        inject(model)


def test_not_a_model():
    with pytest.raises(ModelNotReadyError, match="compiled tf.keras Model"):
        inject(object())


@pytest.mark.parametrize("k", [0, -3, 2.5, "5", True, None])
def test_k_must_be_a_positive_int(k):
    with pytest.raises(InvalidArgumentError, match="k=.*positive int"):
        Lookahead(k=k)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", None])
def test_alpha_must_be_in_unit_interval(alpha):
    with pytest.raises(InvalidArgumentError, match=r"alpha=.*\[0, 1\]"):
        Lookahead(alpha=alpha)


def test_bad_arguments_leave_the_model_untouched():
    model = harness.mlp("sgd", harness.start_weights())
    with pytest.raises(InvalidArgumentError):
        inject(model, k=0)
    assert_still_plain(model)


def test_list_of_optimizers_refused():
    model = harness.mlp("sgd", harness.start_weights())

    class ListCompiled(object):
        """Stands for a model compiled with several optimizers."""
        compile = None
        trainable_weights = [0]
        optimizer = [model.optimizer, model.optimizer]
    with pytest.raises(ModelNotReadyError, match="list of 2 optimizers.*single optimizer"):
        inject(ListCompiled())


def test_unsupported_tensorflow_lists_supported_versions(monkeypatch):
    model = harness.mlp("sgd", harness.start_weights())
    old = env.Environment(Version("1.13.1"), env.KERAS_BUNDLED, "2.2.4-tf", env.GRAPH, None)
    monkeypatch.setattr(lookahead_inject.lookahead, "detect_environment", lambda model=None: old)
    with pytest.raises(UnsupportedEnvironmentError) as error:
        inject(model)
    message = str(error.value)
    assert "TensorFlow 1.13.1" in message and ">=1.14,<1.15" in message and "tf115" in message
    monkeypatch.undo()
    assert_still_plain(model)


def test_backend_that_does_not_fit_the_running_tf():
    model = harness.mlp("sgd", harness.start_weights())
    fitting = lookahead_inject.detect(model)["backend"]
    other = "tf114" if fitting != "tf114" else "tf115"
    with pytest.raises(InvalidArgumentError, match="backend='{}' does not fit.*'{}'".format(other, fitting)):
        inject(model, backend=other)
    assert_still_plain(model)


def test_unknown_backend_name():
    model = harness.mlp("sgd", harness.start_weights())
    with pytest.raises(InvalidArgumentError, match="backend='tf3' is not a backend.*tf115"):
        inject(model, backend="tf3")


def test_second_inject_with_other_settings_on_the_same_model_refused():
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=3)
    with pytest.raises(ModelNotReadyError,
                       match=r"already trains with Lookahead \(k=3.*lookahead_inject\.of\(model\).*remove\(\)"):
        inject(model, k=4)


def test_second_inject_with_the_same_settings_returns_the_models_handle():
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=3, alpha=0.5)
    assert inject(model, k=3, alpha=0.5) is la


def test_of_gives_the_handle_while_the_model_trains_with_it_and_none_after_remove():
    import gc
    import lookahead_inject
    model = harness.mlp("sgd", harness.start_weights())
    assert lookahead_inject.of(model) is None
    handle_id = id(inject(model, k=3))       # the caller keeps no reference to the handle
    gc.collect()
    la = lookahead_inject.of(model)
    assert la is not None and id(la) == handle_id and la.model is model
    la.remove()
    assert lookahead_inject.of(model) is None


@pytest.mark.skipif(not (harness.GRAPH and harness.ENVIRONMENT.tf_version >= Version("2.11")),
                    reason="only TF >= 2.11 in graph mode has optimizers without get_updates")
def test_new_optimizer_in_graph_mode_names_the_legacy_one():
    model = harness.keras.Sequential([harness.keras.layers.Dense(1, input_shape=(3,))])
    # Not harness.optimizer: it gives the legacy one in graph mode.
    model.compile(optimizer=harness.keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    with pytest.raises(ModelNotReadyError, match=r"tf\.keras\.optimizers\.legacy\.SGD"):
        inject(model)


def test_model_without_trainable_weights():
    model = harness.keras.Sequential([harness.keras.layers.Dense(1, input_shape=(3,), trainable=False)])
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse")
    with pytest.raises(ModelNotReadyError, match="no trainable weights"):
        inject(model)


@pytest.mark.parametrize("keras_backend", ["numpy", "openvino"])
def test_keras3_on_a_backend_that_cannot_train_is_refused_with_the_fix(monkeypatch,
                                                                       keras_backend):
    model = harness.mlp("sgd", harness.start_weights())
    other = env.Environment(None, env.KERAS_3_OTHER_BACKEND.format(keras_backend),
                            "3.15.1", env.EAGER, keras_backend)
    monkeypatch.setattr(lookahead_inject.lookahead, "detect_environment", lambda model=None: other)
    with pytest.raises(UnsupportedEnvironmentError,
                       match="{} backend.*KERAS_BACKEND to tensorflow, jax or torch".format(
                           keras_backend)):
        inject(model)


@pytest.mark.parametrize("keras", [env.KERAS_3_JAX, env.KERAS_3_TORCH])
def test_keras3_older_than_its_first_jax_torch_version_is_refused_with_the_fix(monkeypatch,
                                                                                keras):
    model = harness.mlp("sgd", harness.start_weights())
    backend = "jax" if keras == env.KERAS_3_JAX else "torch"
    old = env.Environment(None, keras, "3.3.3", env.EAGER, backend)
    monkeypatch.setattr(lookahead_inject.lookahead, "detect_environment", lambda model=None: old)
    with pytest.raises(UnsupportedEnvironmentError, match=r"keras>=3\.15"):
        inject(model)


def test_keras3_graph_mode_is_refused_with_the_fix(monkeypatch):
    model = harness.mlp("sgd", harness.start_weights())
    graph = env.Environment(Version("2.21.0"), env.KERAS_3, "3.15.1", env.GRAPH, "tensorflow")
    monkeypatch.setattr(lookahead_inject.lookahead, "detect_environment", lambda model=None: graph)
    with pytest.raises(UnsupportedEnvironmentError, match="no graph mode.*TF_USE_LEGACY_KERAS=1"):
        inject(model)


def test_info_without_tensorflow_explains_the_fix():
    # A Python with only what setup.py installs: no TensorFlow, so no numpy either, and
    # no Keras 3 (on JAX / PyTorch it would need no TensorFlow).
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['numpy'] = None; "
            "sys.modules['keras'] = None; "
            "from lookahead_inject.__main__ import main; sys.exit(main(['info']))")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert out.returncode == 1
    assert "TensorFlow is not installed" in out.stdout and "pip install tensorflow" in out.stdout
    assert "Python" in out.stdout and "supported:" in out.stdout


# Where a failure can strike inside inject, on every backend: the first change
# (slow copies), after the training hooks are in place (the handle), the last step.
# Keras 3 on JAX / PyTorch (backends/native/_optimizer_variables.py) hooks the optimizer
# first (a failure between its apply / build hooks and its file sections), then the handle.
# (module under lookahead_inject.backends, class or None for a module-level function, name)
FAILURE_POINTS = ([("native._optimizer_variables", None, "_saver"),
                   ("common.attachment", "Attachment", "__init__")]
                  if harness.KERAS3_WITHOUT_TF else
                  [("common.tf_sync", "LookaheadVariables", "mark_trained"),
                   ("common.attachment", "Attachment", "__init__"),
                   ("common.tf_checkpoint", "Checkpointed", "track")])


@pytest.mark.parametrize("module,cls,method", FAILURE_POINTS)
def test_a_failure_inside_inject_leaves_the_model_as_it_was(monkeypatch, module, cls, method):
    import importlib
    if (module, cls, method) == ("common.tf_checkpoint", "Checkpointed", "track"):
        harness.skip_standalone("models are no TF Trackables: inject tracks no checkpoint "
                                "dependency, so there is no such point to fail at")
    model = harness.mlp("sgd", harness.start_weights())
    optimizer = model.optimizer

    def attributes(owner):
        # TF 1.x Keras makes this bookkeeping dict at the first attribute set on a
        # model, by anyone; it is no trace of inject.
        return set(vars(owner)) - {"_obj_reference_counts_dict"}
    before = attributes(model), attributes(optimizer), model.compile

    def fail(*args, **kwargs):
        raise RuntimeError("forced failure")
    owner = importlib.import_module("lookahead_inject.backends." + module)
    owner = getattr(owner, cls) if cls else owner
    monkeypatch.setattr(owner, method, fail)
    with pytest.raises(RuntimeError, match="forced failure"):
        inject(model, k=2, alpha=0.0)
    monkeypatch.undo()
    assert (attributes(model), attributes(optimizer), model.compile) == before
    assert model.optimizer is optimizer
    assert_still_plain(model)


def test_lookahead_optimizer_on_tf_1_names_inject():
    version = harness.ENVIRONMENT.tf_version
    if version is None or version.major >= 2:
        pytest.skip("{}: LookaheadOptimizer is an optimizer of this Keras "
                    "(tests/test_lookahead_optimizer*.py)".format(harness.ENVIRONMENT.describe()))
    with pytest.raises(UnsupportedEnvironmentError,
                       match=r"On TF 1\.x add Lookahead.*lookahead_inject\.inject\(model"):
        lookahead_inject.LookaheadOptimizer
