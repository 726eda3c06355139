"""``LookaheadOptimizer`` (issue #23): Lookahead as a Keras 3 optimizer, on TensorFlow, JAX
and PyTorch. Compiled, it trains bit for bit as the same optimizer compiled plainly and
injected; in loops written from scratch as keras.io's guides write them (no compile), it
trains as the numpy Lookahead (reference.py) to 1e-5 at every step, also when some steps
leave weights out; a ``.keras`` file saved mid-cycle brings it back, state and all, through
Keras' own ``load_model`` in a fresh process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras3_support as support
from common import BAD_OPTIMIZER_ARGUMENTS, KEPT, WORKERS, docstring_examples, expected_subset_run

BACKEND, SKIP = support.keras3_backend_or_skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

HERE = os.path.dirname(os.path.abspath(__file__))
#: (k, alpha): a cycle that does not divide an epoch; plain training; a reset every 2 steps.
K_ALPHA = [(3, 0.5), (1, 1.0), (2, 0.0)]
#: compile(run_eagerly=...): the traced / jitted step or the Python one.
RUNS = {"compiled": {}, "run_eagerly": {"run_eagerly": True}}


def lookahead_optimizer(opt, k, alpha, **arguments):
    from lookahead_inject import LookaheadOptimizer
    return LookaheadOptimizer(support.optimizer(opt), k=k, alpha=alpha, **arguments)


def compiled(optimizer, run="compiled"):
    model = support.mlp("sgd", support.start_weights(), **RUNS[run])
    model.compile(optimizer=optimizer, loss="mse", **RUNS[run])
    return model


def weights_after_each_step(model, batches):
    out = []
    for x, y in batches:
        model.train_on_batch(x, y)
        out.append(model.get_weights())
    return out


def fit_all_epochs(model):
    x, y = support.data()
    model.fit(x, y, batch_size=support.BATCH, epochs=support.EPOCHS, shuffle=False, verbose=0)
    return model.get_weights()


def the_optimizer_and_inject(inner, train, k=3, alpha=0.5, run="compiled", **arguments):
    """What ``train(model)`` returns for a model compiled with ``LookaheadOptimizer(inner(),
    k, alpha, **arguments)``, and for one compiled with ``inner()`` and injected alike."""
    from lookahead_inject import LookaheadOptimizer, inject
    out = []
    for form in ("optimizer", "inject"):
        model = compiled(LookaheadOptimizer(inner(), k=k, alpha=alpha, **arguments)
                         if form == "optimizer" else inner(), run)
        if form == "inject":
            inject(model, k=k, alpha=alpha, **arguments)
        out.append(train(model))
    return out


def assert_same_bits(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg="{}, weight {}".format(what, i))


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("k, alpha", K_ALPHA)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_compiled_it_trains_bit_for_bit_as_the_optimizer_compiled_and_injected(opt, k, alpha, run):
    batches = support.epoch_batches(*support.data())
    got, want = the_optimizer_and_inject(lambda: support.optimizer(opt),
                                         lambda model: weights_after_each_step(model, batches),
                                         k, alpha, run)
    for step, (g, w) in enumerate(zip(got, want), 1):
        assert_same_bits(g, w, "step {}".format(step))
    numpy_run = support.expected_with_slow(opt, k, alpha, batches)
    support.assert_close(got[-1], numpy_run[-1][0], "weights after the last step")


@pytest.mark.parametrize("optimizer_state", ["reset", "pullback"])
def test_each_optimizer_state_option_trains_bit_for_bit_as_with_inject(optimizer_state):
    batches = support.epoch_batches(*support.data())
    got, want = the_optimizer_and_inject(lambda: support.optimizer("momentum"),
                                         lambda model: weights_after_each_step(model, batches),
                                         optimizer_state=optimizer_state)
    for step, (g, w) in enumerate(zip(got, want), 1):
        assert_same_bits(g, w, "step {}".format(step))
    keep = weights_after_each_step(compiled(lookahead_optimizer("momentum", 3, 0.5)), batches)
    assert max(np.abs(a - b).max() for a, b in zip(got[-1], keep[-1])) > 1e-6


@pytest.mark.parametrize("k, alpha", K_ALPHA)
def test_fit_counts_one_step_per_update_across_epochs(k, alpha):
    got = fit_all_epochs(compiled(lookahead_optimizer("adam", k, alpha)))
    want = support.expected_with_slow("adam", k, alpha, support.epoch_batches(*support.data()))
    support.assert_close(got, want[-1][0], "weights after fit")


#: Settings of the inner optimizer that change what a step is or does: each trains as with
#: inject (a step is an update of the weights, not a call; EMA's values are written at the
#: end of fit by the inner optimizer).
INNER_SETTINGS = [{"clipnorm": 0.01}, {"gradient_accumulation_steps": 2},
                  {"use_ema": True, "ema_overwrite_frequency": None}]


@pytest.mark.parametrize("settings", INNER_SETTINGS, ids=lambda s: sorted(s)[0])
def test_settings_of_the_inner_optimizer_train_as_with_inject(settings):
    import keras

    def inner():
        return keras.optimizers.SGD(learning_rate=0.1, **settings)
    got, want = the_optimizer_and_inject(inner, fit_all_epochs)
    assert_same_bits(got, want, "after fit")
    plain = fit_all_epochs(compiled(inner()))
    # The check has power: Lookahead moved the weights off plain training's.
    assert max(np.abs(a - b).max() for a, b in zip(got, plain)) > 1e-4


@pytest.mark.xfail(strict=True, reason="a known difference (issue #23): the optimizer does not "
                   "see compile(), so an unfrozen weight keeps its slow copy from before the freeze "
                   "(docs/lookahead-optimizer.md)")
def test_a_weight_unfrozen_by_a_compile_takes_a_new_slow_copy_as_with_inject():
    if BACKEND == "keras3_jax":
        pytest.skip("Keras 3.15 on JAX refuses to train after a freeze and compile() with "
                    "the same built optimizer, plain or not (a new optimizer is a new Lookahead)")
    import keras
    x, y = support.data()

    def fine_tuned(model):
        model.fit(x, y, batch_size=support.BATCH, epochs=1, shuffle=False, verbose=0)
        model.train_on_batch(x[:support.BATCH], y[:support.BATCH])     # step 4: mid-cycle
        for trainable, epochs in ((False, 1), (True, 2)):
            model.layers[0].trainable = trainable
            model.compile(optimizer=model.optimizer, loss="mse")
            model.fit(x, y, batch_size=support.BATCH, epochs=epochs, shuffle=False, verbose=0)
        return model.get_weights()
    got, want = the_optimizer_and_inject(lambda: keras.optimizers.SGD(0.1), fine_tuned)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg="weight {}".format(i))


def test_under_mixed_float16_keras_wraps_it_in_a_loss_scale_optimizer_and_it_trains_as_inject():
    import keras

    def loss_scaled_fit(model):
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        return fit_all_epochs(model)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        got, want = the_optimizer_and_inject(lambda: keras.optimizers.SGD(0.1), loss_scaled_fit)
    finally:
        keras.config.set_dtype_policy("float32")
    assert_same_bits(got, want, "after fit")


# -- loops written from scratch (keras.io, "Writing a training loop from scratch") --------

def gradients(model, x, y):
    """The loss's gradients for ``model.trainable_weights``, as each backend's guide gets them."""
    import keras
    loss_fn = keras.losses.MeanSquaredError()
    if BACKEND == "keras3":
        import tensorflow as tf
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)
    if BACKEND == "keras3_jax":
        import jax

        def loss_of(trainable, non_trainable):
            y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, y_pred)
        return jax.grad(loss_of)([v.value for v in model.trainable_variables],
                                 [v.value for v in model.non_trainable_variables])
    loss = loss_fn(keras.ops.convert_to_tensor(y), model(x, training=True))
    model.zero_grad()
    loss.backward()
    return [v.value.grad for v in model.trainable_weights]


def apply_step(model, optimizer, x, y, keep):
    """One step of the guide's loop; only the weights at indices ``keep`` get a gradient."""
    grads = [g if i in keep else None for i, g in enumerate(gradients(model, x, y))]
    if BACKEND == "keras3_torch":
        import torch
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_weights)
    else:
        optimizer.apply(grads, model.trainable_weights)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("k, alpha", K_ALPHA)
def test_a_loop_of_ones_own_trains_as_numpy_lookahead_also_when_steps_leave_weights_out(
        k, alpha, traced):
    if traced and BACKEND != "keras3":
        pytest.skip("tf.function is TensorFlow's; the JAX loop under jax.jit is "
                    "test_the_jax_guides_jitted_loop_...")
    model = support.mlp("sgd", support.start_weights())
    optimizer = lookahead_optimizer("sgd", k, alpha)
    batches = support.epoch_batches(*support.data())
    step = apply_step
    if traced:
        import tensorflow as tf
        step = tf.function(apply_step, reduce_retracing=False)
    got = []
    for (x, y), keep in zip(batches, KEPT):
        if traced:
            step(model, optimizer, tf.constant(x), tf.constant(y), keep)
        else:
            step(model, optimizer, x, y, keep)
        got.append(model.get_weights())
    for step_number, (g, w) in enumerate(zip(got, expected_subset_run(k, alpha, batches, KEPT)), 1):
        support.assert_close(g, w, "weights after step {}".format(step_number))


@pytest.mark.skipif(BACKEND != "keras3_jax", reason="jax.jit and stateless_apply are JAX's")
@pytest.mark.parametrize("k, alpha", K_ALPHA)
def test_the_jax_guides_jitted_loop_with_stateless_apply_trains_as_numpy_lookahead(k, alpha):
    import jax
    import keras
    model = support.mlp("adam", support.start_weights())
    optimizer = lookahead_optimizer("adam", k, alpha)
    loss_fn = keras.losses.MeanSquaredError()

    def compute_loss_and_updates(trainable_variables, non_trainable_variables, x, y):
        y_pred, non_trainable_variables = model.stateless_call(
            trainable_variables, non_trainable_variables, x, training=True)
        return loss_fn(y, y_pred), non_trainable_variables

    grad_fn = jax.value_and_grad(compute_loss_and_updates, has_aux=True)

    @jax.jit
    def train_step(state, data):
        trainable_variables, non_trainable_variables, optimizer_variables = state
        x, y = data
        (loss, non_trainable_variables), grads = grad_fn(
            trainable_variables, non_trainable_variables, x, y)
        trainable_variables, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables)
        return loss, (trainable_variables, non_trainable_variables, optimizer_variables)

    optimizer.build(model.trainable_variables)
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    batches = support.epoch_batches(*support.data())
    want = support.expected_with_slow("adam", k, alpha, batches)
    for step, data in enumerate(batches):
        _, state = train_step(state, data)
        support.assert_close([np.asarray(v) for v in state[0]], want[step][0],
                             "weights after step {}".format(step + 1))
    # The guide writes the state back at the end; training then goes on with apply.
    for variable, value in zip(model.trainable_variables + optimizer.variables,
                               state[0] + state[2]):
        variable.assign(value)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == len(batches)


# -- Keras' own files ------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_a_keras_file_saved_mid_cycle_loads_with_keras_load_model_and_trains_on_exactly(
        opt, tmp_path):
    for phase in ("first", "second"):
        subprocess.run([sys.executable, os.path.join(WORKERS, "keras3_optimizer_worker.py"),
                        opt, phase, str(tmp_path)], cwd=HERE, check=True, timeout=300)
    batches = support.epoch_batches(*support.data(), epochs=3)[:9]
    want = support.expected_with_slow(opt, 3, 0.5, batches)
    with np.load(str(tmp_path / "final.npz")) as final:
        got = [final["arr_{}".format(i)] for i in range(4)]
        config = json.loads(str(final["config"]))
    assert (config["k"], config["alpha"], config["optimizer_state"]) == (3, 0.5, "keep")
    assert config["inner_class"] == type(support.optimizer(opt)).__name__
    assert config["inner_optimizer"]["config"]["learning_rate"] == pytest.approx(
        support.optimizer(opt).get_config()["learning_rate"])
    assert config["iterations"] == 4
    support.assert_close(got, want[-1][0], "weights after the resumed run")


def test_its_config_nests_the_inner_optimizer_and_comes_back_equal():
    import keras
    optimizer = lookahead_optimizer("momentum", 4, 0.25, optimizer_state="pullback")
    config = keras.saving.serialize_keras_object(optimizer)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(optimizer)
    assert again.get_config() == optimizer.get_config()
    assert optimizer.get_config()["inner_optimizer"]["class_name"] == "SGD"


# -- what a user reads off an optimizer, and tfa's names ------------------------------

def test_learning_rate_and_iterations_are_the_inner_optimizers():
    import keras
    optimizer = lookahead_optimizer("sgd", 3, 0.5)
    model = compiled(optimizer)
    x, y = support.data()
    model.fit(x, y, batch_size=support.BATCH, epochs=1, shuffle=False, verbose=0)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == support.STEPS_PER_EPOCH
    optimizer.learning_rate = 0.05      # as ReduceLROnPlateau sets it
    assert float(keras.ops.convert_to_numpy(optimizer.inner_optimizer.learning_rate)) == \
        pytest.approx(0.05)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.05)


def test_tfa_argument_names_mean_k_and_alpha():
    from lookahead_inject import LookaheadOptimizer
    optimizer = LookaheadOptimizer(support.optimizer("sgd"), sync_period=6, slow_step_size=0.25)
    assert (optimizer.k, optimizer.alpha) == (6, 0.25)


@pytest.mark.parametrize("arguments, named", BAD_OPTIMIZER_ARGUMENTS)
def test_bad_arguments_are_refused_with_the_fix(arguments, named):
    from lookahead_inject import InvalidArgumentError, LookaheadOptimizer
    with pytest.raises(InvalidArgumentError, match=named):
        LookaheadOptimizer(support.optimizer("sgd"), **arguments)


def test_a_loss_scale_optimizer_goes_around_it_not_inside():
    import keras
    from lookahead_inject import InvalidArgumentError, LookaheadOptimizer
    with pytest.raises(InvalidArgumentError, match=r"LossScaleOptimizer\(LookaheadOptimizer"):
        LookaheadOptimizer(keras.optimizers.LossScaleOptimizer(support.optimizer("sgd")))


def test_its_docstring_example_runs():
    from lookahead_inject.backends.native import lookahead_optimizer
    assert docstring_examples([lookahead_optimizer.LookaheadOptimizer]) == (1, 0)


def test_lookahead_inject_imports_no_keras_until_it_is_asked_for():
    out = subprocess.run([sys.executable, "-c", "import sys, lookahead_inject; "
                          "print('keras' in sys.modules); lookahead_inject.LookaheadOptimizer; "
                          "print('keras' in sys.modules)"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=300)
    assert out.stdout.split() == ["False", "True"]


def test_injecting_into_a_model_that_trains_with_it_is_refused():
    from lookahead_inject import ModelNotReadyError, inject
    model = compiled(lookahead_optimizer("sgd", 3, 0.5))
    with pytest.raises(ModelNotReadyError, match="LookaheadOptimizer .*Lookahead already"):
        inject(model)
