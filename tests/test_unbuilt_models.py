"""Models without weights at inject (a Sequential without an input shape, a subclassed
model, TF 1.x deferred compile) get Lookahead from their first training step exactly as
built ones: the slow weights are the weights the build created, the first step is step 1."""

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
import reference
from lookahead_inject import ModelNotReadyError, inject
from common import expected

layers = harness.keras.layers


def initializer(value):
    """An initializer giving ``value``: the build creates the reference's start weights."""
    def init(shape, dtype=None, **kwargs):
        return harness.constant(np.asarray(value).reshape(shape), dtype)
    return init


def dense_layers():
    w1, b1, w2, b2 = harness.start_weights()
    return [layers.Dense(8, activation="tanh", kernel_initializer=initializer(w1),
                         bias_initializer=initializer(b1)),
            layers.Dense(1, kernel_initializer=initializer(w2), bias_initializer=initializer(b2))]


class Subclassed(harness.keras.Model):
    def __init__(self):
        super(Subclassed, self).__init__()
        self.hidden, self.out = dense_layers()

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def sequential_without_input_shape():
    return harness.keras.Sequential(dense_layers())


BUILDS = {"sequential_without_input_shape": sequential_without_input_shape,
          "subclassed": Subclassed}


def unbuilt(build, opt, execution):
    model = BUILDS[build]()
    model.compile(optimizer=harness.optimizer(opt), loss="mse", **harness.compile_kwargs(execution))
    assert not model.built              # the point of these tests
    return model


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_a_model_built_by_its_first_step_matches_numpy_lookahead(build, opt, execution):
    x, y = harness.data()
    model = unbuilt(build, opt, execution)
    la = inject(model, k=3, alpha=0.5)
    harness.assert_trajectories_equal(harness.train(model, "train_on_batch", x, y),
                                      expected(opt, 3, 0.5, x, y))
    assert la.step == harness.STEPS


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("first_call", ["predict", "evaluate"])
def test_a_model_built_by_predict_or_evaluate_after_inject(build, first_call, execution):
    x, y = harness.data()
    model = unbuilt(build, "momentum", execution)
    la = inject(model, k=3, alpha=0.5)
    if first_call == "predict":
        model.predict(x[:16])
    else:
        model.evaluate(x[:16], y[:16], verbose=0)
    assert la.get_state()["step"] == 0
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y),
                                      expected("momentum", 3, 0.5, x, y))


def test_a_model_with_nothing_trainable_once_built_is_refused_at_its_first_step():
    if harness.KERAS_3 or (not harness.GRAPH and harness.tf_older_than(2, 4)):
        pytest.skip("Keras 3 (any backend) and TF 2.0 - 2.3 eager (training_v2; TF 2.2's "
                    "_minimize checks `if trainable_variables`; TF 2.3.4's fit ran without "
                    "calling it in the sweep of 2026-11-26) do not call the optimizer for a "
                    "model without trainable weights, so there is no step to refuse")
    x, y = harness.data()
    model = harness.keras.Sequential([layers.Dense(1, trainable=False)])
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse")
    inject(model)
    with pytest.raises(ModelNotReadyError) as error:
        model.fit(x, y, batch_size=harness.BATCH, epochs=1, verbose=0)
    # The library's message comes first, not AutoGraph's account of where it was raised.
    assert str(error.value).startswith("The model has no trainable weights once built")


def saved_state(tmp_path):
    """(state, path of its la.save file) of a built model trained 4 steps."""
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=3, alpha=0.5)
    for x, y in harness.epoch_batches(*harness.data())[:4]:
        model.train_on_batch(x, y)
    path = str(tmp_path / "lookahead_state")
    la.save(path)
    return la.get_state(), path


def restore(la, how, lookahead_state, path):
    if how == "set_state":
        la.set_state(lookahead_state)
    else:
        la.load(path)


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("how", ["set_state", "load"])
def test_a_state_restored_before_the_model_has_weights_is_refused_with_the_fix(
        build, how, tmp_path):
    lookahead_state, path = saved_state(tmp_path)
    la = inject(unbuilt(build, "momentum", None), k=3, alpha=0.5)
    with pytest.raises(ModelNotReadyError, match=r"has no weights yet .* Build the model first"):
        restore(la, how, lookahead_state, path)


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_a_state_restored_once_the_model_is_built_is_its_state(build, tmp_path):
    lookahead_state, path = saved_state(tmp_path)
    model = unbuilt(build, "momentum", None)
    la = inject(model, k=3, alpha=0.5)
    model.predict(harness.data()[0][:1], verbose=0)
    restore(la, "load", lookahead_state, path)
    assert la.step == lookahead_state["step"]
    harness.assert_trajectories_equal([la.get_state()["slow_weights"]],
                                      [lookahead_state["slow_weights"]], atol=0)
