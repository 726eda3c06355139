"""Regression tests for the blog's bugs (see shared seed: lookahead_tf_keras_blog.md)."""

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
import reference
from lookahead_inject import Lookahead, inject
from common import expected


def test_public_keras_backend_lacks_what_the_blog_called():
    # The blog's K.symbolic_learning_phase() / K.get_graph() raise AttributeError on
    # the public tf.keras.backend in every TF from 1.14 to 2.21 (and on Keras 3's
    # keras.backend on JAX / PyTorch) ...
    backend = (tf.keras if tf is not None else harness.keras).backend
    assert not hasattr(backend, "symbolic_learning_phase")
    assert not hasattr(backend, "get_graph")
    # ... while inject trains, because the backends use the engine's own module.
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2, alpha=0.5)
    harness.assert_trajectories_equal(harness.train(model, "train_on_batch", x, y, epochs=1),
                                      expected("sgd", 2, 0.5, x, y, steps=3))


def test_rebuilt_train_function_keeps_lookahead():
    # The 1.15 variant checked getattr(self, 'train_function') on the Lookahead object,
    # and Keras rebuilds the model's function whenever the sample-weight feed changes
    # (graph mode) or compile() runs: each rebuild must keep the sync.
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2, alpha=0.5)
    weights = []
    for i, (bx, by) in enumerate(harness.epoch_batches(x, y, 2)):
        if i == 3:
            model.compile(optimizer=model.optimizer, loss="mse")
        weight = np.ones(len(bx), "float32") if i % 2 else None   # equal to no weights
        model.train_on_batch(bx, by, sample_weight=weight)
        weights.append(model.get_weights())
    harness.assert_trajectories_equal(weights, expected("sgd", 2, 0.5, x, y, steps=6))


def test_fresh_model_first_read_does_not_race_the_slow_initializer():
    # The blog's K.variable(p) read p in the same initializer run as p's own
    # (FailedPreconditionError on a fresh TF1 model). Inject before anything ran:
    model = harness.keras.Sequential([harness.keras.layers.Dense(8, activation="tanh", input_shape=(4,)),
                                 harness.keras.layers.Dense(1)])
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse")
    inject(model, k=2, alpha=0.0)
    start = model.get_weights()          # the first session run initialises everything
    x, y = harness.data()
    harness.train(model, "train_on_batch", x[:32], y[:32], epochs=1)
    harness.assert_trajectories_equal([model.get_weights()], [start], atol=1e-7)


@pytest.mark.parametrize("load", ["set_weights", "load_weights_h5"])
def test_weights_loaded_after_inject_are_the_start_point(load, tmp_path):
    x, y = harness.data()
    model = harness.mlp("sgd")
    inject(model, k=3, alpha=0.5)
    if load == "set_weights":
        model.set_weights([w.astype("float32") for w in harness.start_weights()])
    else:
        path = harness.h5_path(tmp_path, "start")
        harness.mlp("sgd", harness.start_weights()).save_weights(path)
        model.load_weights(path)
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y), expected("sgd", 3, 0.5, x, y))


def test_one_lookahead_object_counts_each_model_separately():
    # The blog's self.count was one Python int for every model it was injected into.
    x, y = harness.data()
    first, second = harness.mlp("sgd", harness.start_weights()), harness.mlp("sgd", harness.start_weights())
    la = Lookahead(k=3, alpha=0.5)
    la_first, la_second = la.inject(first), la.inject(second)
    assert la_first is la and la_second is not la and (la_second.k, la_second.alpha) == (3, 0.5)
    got_first, got_second = [], []
    for bx, by in harness.epoch_batches(x, y, 2):       # interleaved steps
        first.train_on_batch(bx, by)
        second.train_on_batch(bx, by)
        got_first.append(first.get_weights())
        got_second.append(second.get_weights())
    want = expected("sgd", 3, 0.5, x, y, steps=6)
    harness.assert_trajectories_equal(got_first, want)
    harness.assert_trajectories_equal(got_second, want)
    assert la_first.step == la_second.step == 6


def test_remove_gives_back_plain_training():
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=2, alpha=0.0)
    la.remove()
    weights = harness.train(model, "train_on_batch", x, y, epochs=1)
    plain = reference.mlp_trajectory(harness.start_weights(), harness.epoch_batches(x, y, 1),
                                     reference.OPTIMIZERS["sgd"](), 1, 1.0)
    harness.assert_trajectories_equal(weights, plain)
    inject(model, k=2)          # and the model takes Lookahead again
