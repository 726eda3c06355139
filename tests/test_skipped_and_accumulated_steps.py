"""A Lookahead step is a weight update: not a micro-batch, not a step the loss scaler skips."""

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
import reference
from lookahead_inject import inject

layers = harness.keras.layers

# k=2 over 4 accumulated batches syncs after batches 8 and 16 (a count of batches would
# sync after batch 2); 6 epochs of 3 batches reach both and end between two updates.
K, ALPHA, ACCUMULATE, EPOCHS = 2, 0.5, 4, 6


def accumulating(opt):
    """``harness.optimizer(opt)`` with gradient_accumulation_steps (Keras 3 only)."""
    plain = harness.optimizer(opt)
    return type(plain).from_config(dict(plain.get_config(), gradient_accumulation_steps=ACCUMULATE))


@pytest.mark.skipif(not harness.KERAS_3,
                    reason="gradient_accumulation_steps is a Keras 3 optimizer argument; the "
                           "Keras 2 optimizers (TF 1.14 - 2.15, tf-keras) cannot accumulate")
@pytest.mark.parametrize("arrival", ["compile_before_inject", "compile_after_inject",
                                     "inside_a_loss_scale_optimizer"])
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_k_counts_weight_updates_not_accumulated_batches(opt, arrival, execution):
    x, y = harness.data()
    if arrival == "compile_before_inject":
        model = harness.mlp(accumulating(opt), harness.start_weights(), execution)
        la = inject(model, k=K, alpha=ALPHA)
    elif arrival == "inside_a_loss_scale_optimizer":
        optimizer = harness.keras.mixed_precision.LossScaleOptimizer(accumulating(opt))
        model = harness.mlp(optimizer, harness.start_weights(), execution)
        la = inject(model, k=K, alpha=ALPHA)
    else:
        model = harness.mlp(opt, harness.start_weights(), execution)
        la = inject(model, k=K, alpha=ALPHA)
        model.compile(optimizer=accumulating(opt), loss="mse", **harness.compile_kwargs(execution))
    got = harness.train(model, "fit", x, y, epochs=EPOCHS)
    batches = harness.epoch_batches(x.astype(np.float64), y.astype(np.float64), EPOCHS)
    want = reference.mlp_accumulating_trajectory(
        harness.start_weights(), batches, reference.OPTIMIZERS[opt](), K, ALPHA, ACCUMULATE)
    harness.assert_trajectories_equal(got, want)
    assert la.step == len(batches) // ACCUMULATE


def _optimizer_v2_sgd():
    # enable_mixed_precision_graph_rewrite wraps only the Keras 2 OptimizerV2,
    # tf.keras.optimizers.legacy from TF 2.11 (as harness.optimizer("sgd")).
    module = getattr(tf.keras.optimizers, "legacy", tf.keras.optimizers)
    return module.SGD(learning_rate=0.1)


def _graph_rewrite_functions():
    # tf.compat.v1.mixed_precision from TF 2.4; tf.compat.v1.train.experimental before.
    module = getattr(tf.compat.v1, "mixed_precision", None)
    if module is None or not hasattr(module, "enable_mixed_precision_graph_rewrite"):
        module = tf.compat.v1.train.experimental
    return module.enable_mixed_precision_graph_rewrite, module.disable_mixed_precision_graph_rewrite


LOSS_SCALING = {
    # How the loss-scale optimizer arrives -> None if this TF has it, else the skip reason.
    "mixed_float16_policy": (
        "TF 1.14 has no mixed_float16 policy, TF 1.15 sets it only under TF 2 behaviour"
        if harness.tf_older_than(2) else None),
    "LossScaleOptimizer": None,
    "graph_rewrite": (
        harness.without_tensorflow("no enable_mixed_precision_graph_rewrite") or
        "Keras 3 (TF >= 2.16) optimizers cannot be wrapped by "
        "enable_mixed_precision_graph_rewrite" if harness.KERAS_3 else None),
}


@pytest.fixture(params=sorted(LOSS_SCALING))
def loss_scaled_optimizer(request):
    """A compile() optimizer argument whose loss scaler skips non-finite steps."""
    if LOSS_SCALING[request.param]:
        pytest.skip(LOSS_SCALING[request.param])
    harness.skip_standalone("has no loss scaling: the loss-scale optimizers wrap tf.keras or "
                            "tf.train optimizers, which a standalone Keras model cannot take")
    mixed_precision = harness.keras.mixed_precision
    if request.param == "mixed_float16_policy":
        # set_global_policy from TF 2.4; experimental.set_policy in TF 2.0 - 2.3.
        set_policy = getattr(mixed_precision, "set_global_policy", None) or \
            mixed_precision.experimental.set_policy
        set_policy("mixed_float16")
        yield harness.optimizer("sgd")
        set_policy("float32")
    elif request.param == "LossScaleOptimizer":
        if hasattr(mixed_precision, "LossScaleOptimizer"):         # TF >= 2.4, Keras 3
            yield mixed_precision.LossScaleOptimizer(harness.optimizer("sgd"))
        else:
            yield mixed_precision.experimental.LossScaleOptimizer(harness.optimizer("sgd"), "dynamic")
    else:
        enable, disable = _graph_rewrite_functions()
        yield enable(_optimizer_v2_sgd())
        disable()


def test_loss_scale_skipped_step_is_not_a_lookahead_step(loss_scaled_optimizer):
    model = harness.keras.Sequential([
        layers.Dense(8, activation="tanh", input_shape=(harness.N_IN,)),
        layers.Dense(1, dtype="float32")])
    model.compile(optimizer=loss_scaled_optimizer, loss="mse")
    la = inject(model, k=2, alpha=0.0)
    start = model.get_weights()
    x, y = harness.data()
    model.train_on_batch(x[:16], y[:16])                                  # step 1
    after_one = model.get_weights()
    model.train_on_batch(x[:16], np.full_like(y[:16], np.inf))            # inf loss: skipped
    assert la.step == 1
    harness.assert_trajectories_equal([model.get_weights()], [after_one], atol=0)
    model.train_on_batch(x[16:32], y[16:32])                               # step 2: sync
    assert la.step == 2
    harness.assert_trajectories_equal([model.get_weights()], [start], atol=1e-7)
    assert all(s.dtype == np.float32 for s in la.get_state()["slow_weights"])
