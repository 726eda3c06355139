"""Lookahead on models beyond the plain MLP: layers with updates, several inputs and
outputs, sample and class weights. The reference is the same Keras model trained
plainly, with Lookahead applied by hand through get/set of the weights."""

import numpy as np
import pytest

import harness
from lookahead_inject import inject

layers = harness.keras.layers


def bn_dropout_model():
    model = harness.keras.Sequential([
        layers.Dense(8, input_shape=(harness.N_IN,)),
        layers.BatchNormalization(),
        layers.Activation("tanh"),
        layers.Dropout(0.5),
        layers.Dense(1),
    ])
    model.compile(optimizer=harness.optimizer("momentum"), loss="mse")
    return model


@pytest.mark.parametrize("api", harness.APIS)
def test_batchnorm_statistics_update_while_trainable_weights_reset(api):
    # alpha=0: after k=3 steps every trainable weight is back at its start value,
    # while the moving mean and variance (not trainable) keep what training taught them.
    x, y = harness.data()
    model = bn_dropout_model()
    inject(model, k=3, alpha=0.0)
    bn = model.layers[1]
    start_trainable = harness.get_values(model.trainable_weights)
    start_moving = harness.get_values([bn.moving_mean, bn.moving_variance])
    harness.train(model, api, x, y, epochs=1)            # 3 steps
    for got, want in zip(harness.get_values(model.trainable_weights), start_trainable):
        np.testing.assert_allclose(got, want, atol=1e-6)
    for got, want in zip(harness.get_values([bn.moving_mean, bn.moving_variance]), start_moving):
        assert np.abs(got - want).max() > 1e-3


def test_batchnorm_model_matches_hand_lookahead():
    # Without dropout randomness the whole trajectory is comparable.
    def build():
        model = harness.keras.Sequential([
            layers.Dense(8, input_shape=(harness.N_IN,)), layers.BatchNormalization(),
            layers.Activation("tanh"), layers.Dense(1)])
        model.compile(optimizer=harness.optimizer(harness.twin_safe("adam")), loss="mse")
        return model
    x, y = harness.data()
    steps = [lambda m, b=b: m.train_on_batch(*b) for b in harness.epoch_batches(x, y, 3)]
    harness.assert_matches_hand_lookahead(build, steps, k=4, alpha=0.5)


def two_in_two_out():
    a = layers.Input((3,), name="a")
    b = layers.Input((2,), name="b")
    hidden = layers.Dense(6, activation="tanh")(layers.concatenate([a, b]))
    model = harness.keras.Model([a, b], [layers.Dense(1, name="p")(hidden),
                                    layers.Dense(2, name="q")(hidden)])
    model.compile(optimizer=harness.optimizer("sgd"), loss=["mse", "mae"],
                  loss_weights=[1.0, 0.5])
    return model


def test_two_inputs_two_outputs():
    rng = np.random.RandomState(4)
    xa, xb = rng.randn(32, 3).astype("float32"), rng.randn(32, 2).astype("float32")
    ya, yb = rng.randn(32, 1).astype("float32"), rng.randn(32, 2).astype("float32")
    steps = [lambda m, i=i: m.train_on_batch([xa[i:i + 8], xb[i:i + 8]], [ya[i:i + 8], yb[i:i + 8]])
             for i in (0, 8, 16, 24) * 2]
    harness.assert_matches_hand_lookahead(two_in_two_out, steps, k=3, alpha=0.5)


def test_sample_weight():
    x, y = harness.data()
    w = np.random.RandomState(5).uniform(0, 2, len(x)).astype("float32")
    steps = [lambda m, i=i: m.train_on_batch(x[i:i + 16], y[i:i + 16], sample_weight=w[i:i + 16])
             for i in (0, 16, 32) * 3]
    harness.assert_matches_hand_lookahead(lambda: harness.mlp("sgd"), steps, k=2, alpha=0.5)


def test_class_weight():
    rng = np.random.RandomState(6)
    x = rng.randn(48, harness.N_IN).astype("float32")
    labels = (x[:, 0] > 0.3).astype("int32")

    def build():
        model = harness.keras.Sequential([layers.Dense(2, activation="softmax",
                                                  input_shape=(harness.N_IN,))])
        model.compile(optimizer=harness.optimizer("sgd"), loss="sparse_categorical_crossentropy")
        return model
    steps = [lambda m, i=i: m.train_on_batch(x[i:i + 16], labels[i:i + 16],
                                             class_weight={0: 1.0, 1: 3.0})
             for i in (0, 16, 32) * 3]
    harness.assert_matches_hand_lookahead(build, steps, k=2, alpha=0.5)


def test_a_model_of_many_weight_tensors_matches_hand_lookahead():
    # 14 Dense layers, 28 tensors: on JAX the slow copies of one dtype share arrays of 8
    # weights each (keras3_jax._Jax.PACKED), so a weight's copy sits in any of 4 arrays
    # and at any position in one; a 3-layer model has them all in the first. The two
    # kernels of 6 x 2800 elements have an array each (keras3_jax._Jax.ALONE).
    def build():
        model = harness.keras.Sequential(
            [layers.Dense(6, activation="tanh", input_shape=(harness.N_IN,))]
            + [layers.Dense(6, activation="tanh") for _ in range(5)]
            + [layers.Dense(2800, activation="tanh")]
            + [layers.Dense(6, activation="tanh") for _ in range(6)] + [layers.Dense(1)])
        model.compile(optimizer=harness.optimizer(harness.twin_safe("adam")), loss="mse")
        return model
    x, y = harness.data()
    steps = [lambda m, b=b: m.train_on_batch(*b) for b in harness.epoch_batches(x, y, 3)]
    harness.assert_matches_hand_lookahead(build, steps, k=4, alpha=0.5)



def test_a_model_as_keras_initialized_it_matches_hand_lookahead():
    # Weights left as Keras made them (no set_weights), fit's first call: on JAX the
    # 32 x 600 kernel has an array of its own (keras3_jax._Jax.ALONE), and the start taken
    # before the first step must not hand the train function the weight's own buffer as
    # that array as well.
    def build():
        model = harness.keras.Sequential(
            [layers.Dense(600, input_shape=(32,))] + [layers.Dense(16) for _ in range(12)])
        # harness.optimizer, not "sgd": standalone Keras' own SGD races with itself
        # (harness.gradients_first; 1.7e-5 off on Keras 2.2.5 / TF 1.14 in CI).
        model.compile(optimizer=harness.optimizer("sgd"), loss="mse")
        return model
    model = build()
    reference_model = build()
    reference_model.set_weights(model.get_weights())
    inject(model, k=2, alpha=0.5)
    rng = np.random.RandomState(0)
    x, y = rng.rand(32, 32).astype("float32"), rng.rand(32, 16).astype("float32")
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    steps = [lambda m, i=i: m.train_on_batch(x[i:i + 16], y[i:i + 16]) for i in (0, 16)]
    want, _ = harness.keras_lookahead_reference(reference_model, steps, 2, 0.5)
    harness.assert_trajectories_equal([model.get_weights()], want[-1:])
