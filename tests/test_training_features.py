"""What users combine with Lookahead keeps working and stays exact."""

import inspect

import numpy as np
import pytest

import harness
from lookahead_inject import inject
from common import expected

layers = harness.keras.layers


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_sparse_gradients_of_an_embedding(opt, execution):
    rng = np.random.RandomState(7)
    ids = rng.randint(0, 20, (48, 5)).astype("int32")
    y = rng.randn(48, 1).astype("float32")

    def build():
        model = harness.keras.Sequential([layers.Embedding(20, 4, input_length=5),
                                     layers.Flatten(), layers.Dense(1)])
        # Built before compile: TF 2.2's Sequential.build after compile forgets the compile
        # ("You must compile your model"), with or without Lookahead.
        model.build((None, 5))
        model.compile(optimizer=harness.optimizer(harness.twin_safe(opt)), loss="mse",
                      **harness.compile_kwargs(execution))
        return model
    steps = [lambda m, i=i: m.train_on_batch(ids[i:i + 16], y[i:i + 16]) for i in (0, 16, 32) * 3]
    harness.assert_matches_hand_lookahead(build, steps, k=4, alpha=0.5)


def test_learning_rate_schedule_still_drives_the_inner_optimizer():
    # Standalone Keras has no schedules; its decay= reads `iterations` unordered with
    # its increment (as its Adam does), so two models side by side need not agree.
    harness.skip_standalone("has no learning-rate schedules (its decay= races with its "
                            "own step count)")
    module = harness.optimizer("sgd").__class__

    def build():
        schedule = harness.keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=1,
                                                                       decay_rate=0.7)
        return harness.mlp(module(learning_rate=schedule), harness.start_weights())
    x, y = harness.data()
    steps = [lambda m, b=b: m.train_on_batch(*b) for b in harness.epoch_batches(x, y, 3)]
    harness.assert_matches_hand_lookahead(build, steps, k=2, alpha=0.5)


def test_reduce_lr_on_plateau_acts_on_the_users_optimizer():
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    reference_model = harness.mlp("sgd", harness.start_weights())
    user_optimizer = model.optimizer
    inject(model, k=2, alpha=0.5)
    assert model.optimizer is user_optimizer

    def plateau():    # min_delta no loss can beat: the rate halves after every epoch
        return harness.keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                                    min_delta=1e9, verbose=0)
    got = harness.RecordWeights()
    model.fit(x, y, batch_size=harness.BATCH, epochs=3, shuffle=False, verbose=0,
              callbacks=[plateau(), got])
    want = harness.RecordWeights()
    reference_model.fit(x, y, batch_size=harness.BATCH, epochs=3, shuffle=False, verbose=0,
                        callbacks=[harness.HandLookahead(2, 0.5), plateau(), want])
    # Epoch 1 sets the best loss; epochs 2 and 3 each halve the rate.
    assert harness.learning_rate(model) == pytest.approx(0.1 * 0.5 ** 2)
    harness.assert_trajectories_equal(got.weights, want.weights)


@pytest.mark.skipif(not harness.has_steps_per_execution(),
                    reason="steps_per_execution needs TF >= 2.4 in eager mode (not TF 1.x, "
                           "TF 2.0-2.3, or any graph mode), or Keras 3 on JAX (Keras 3.15 on "
                           "PyTorch refuses any value but 1)")
def test_steps_per_execution_keeps_every_step_exact():
    # Callbacks see only every 3rd step here, so a callback Lookahead would be wrong;
    # the in-step sync is not.
    x, y = harness.data()
    model = harness.mlp("adam", harness.start_weights(), steps_per_execution=3)
    inject(model, k=2, alpha=0.5)
    recorder = harness.RecordWeights()
    model.fit(x, y, batch_size=harness.BATCH, epochs=harness.EPOCHS, shuffle=False,
              verbose=0, callbacks=[recorder])
    want = expected("adam", 2, 0.5, x, y)[2::3]
    harness.assert_trajectories_equal(recorder.weights, want)


def test_validation_evaluate_predict_and_progress_bar(capsys):
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2, alpha=0.5)
    history = model.fit(x, y, batch_size=harness.BATCH, epochs=2, shuffle=False, verbose=1,
                        validation_data=(x[:16], y[:16]))
    assert "val_loss" in history.history and len(history.history["val_loss"]) == 2
    assert "loss" in capsys.readouterr().out          # Keras' own progress output
    twin = harness.mlp("sgd", model.get_weights())
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), twin.evaluate(x, y, verbose=0),
                               atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), atol=1e-6)


def test_slow_weights_have_their_fast_weights_dtype_and_shape():
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model)
    x, y = harness.data()
    model.train_on_batch(x[:16], y[:16])          # from here on get_state reads the slow copies
    for slow, fast in zip(la.get_state()["slow_weights"], harness.get_values(model.trainable_weights)):
        assert slow.dtype == fast.dtype and slow.shape == fast.shape


@pytest.mark.skipif(harness.GRAPH or harness.tf_older_than(2, 2),
                    reason="Model.train_step exists from TF 2.2 in eager mode (not TF 1.x, TF "
                           "2.0 / 2.1, or any graph mode)")
def test_custom_train_step_that_calls_the_optimizer_matches_numpy_lookahead(execution):
    # TF: GradientTape + apply_gradients; JAX: a stateless step with
    # optimizer.stateless_apply; PyTorch: loss.backward() + optimizer.apply.
    model = harness.custom_train_step_model(
        [layers.Dense(8, activation="tanh", input_shape=(harness.N_IN,)), layers.Dense(1)])
    model.compile(optimizer=harness.optimizer("momentum"), loss="mse",
                  **harness.compile_kwargs(execution))
    model.set_weights([np.asarray(w, "float32") for w in harness.start_weights()])
    la = inject(model, k=3, alpha=0.5)
    x, y = harness.data()
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y),
                                      expected("momentum", 3, 0.5, x, y))
    assert la.step == harness.STEPS


def _compile_without_jit_compile():
    """The skip reason where Keras' compile() has no jit_compile= for a TF step to be
    compiled by XLA, else None."""
    if harness.KERAS3_WITHOUT_TF:
        return harness.without_tensorflow("XLA compiles the TF step (on JAX fit is jitted "
                                          "in every test, on PyTorch \"jit\" is torch.compile)")
    if harness.GRAPH:
        return ("TF {} in graph mode runs the train function in a session, not an "
                "XLA-compiled tf.function".format(harness.tf.__version__))
    if "jit_compile" not in inspect.signature(harness.keras.Model.compile).parameters:
        return "Keras of TF {} has no compile(jit_compile=)".format(harness.tf.__version__)
    return None


WITHOUT_JIT_COMPILE = _compile_without_jit_compile()


@pytest.mark.skipif(WITHOUT_JIT_COMPILE is not None, reason=str(WITHOUT_JIT_COMPILE))
@pytest.mark.parametrize("k, alpha", [(3, 0.5), (2, 0.0)])
def test_a_step_xla_compiles_matches_numpy_lookahead(k, alpha):
    # tf2xla cannot look a variable up by name (no VarHandleOp kernel): there the sync's
    # branch takes the slow copies as inputs (common.tf_sync._names).
    model = harness.mlp("sgd", harness.start_weights(), jit_compile=True)
    la = inject(model, k=k, alpha=alpha)
    x, y = harness.data()
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y),
                                      expected("sgd", k, alpha, x, y))
    assert la.step == harness.STEPS


@pytest.mark.skipif(harness.KERAS_BACKEND != "jax",
                    reason="a loop of the user's own on Keras 3 / JAX: there the start is taken "
                           "outside fit's train function (elsewhere every step takes it alike)")
@pytest.mark.parametrize("jitted", [False, True], ids=["eager_apply", "jit_stateless_apply"])
def test_a_training_loop_of_the_users_own_matches_numpy_lookahead(jitted):
    import jax
    from keras import ops
    model = harness.mlp("momentum", harness.start_weights())
    inject(model, k=3, alpha=0.5)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    frozen = [v.value for v in model.non_trainable_variables]

    def loss(trainable, bx, by):
        prediction, _ = model.stateless_call(trainable, frozen, bx)
        return ops.mean(ops.square(prediction - by))

    def step(trainable, optimizer_values, bx, by):
        grads = jax.grad(loss)(trainable, bx, by)
        return optimizer.stateless_apply(optimizer_values, grads, trainable)

    step = jax.jit(step)
    x, y = harness.data()
    trainable = [v.value for v in model.trainable_variables]
    optimizer_values = [v.value for v in optimizer.variables]
    trajectory = []
    for bx, by in harness.epoch_batches(x, y):
        if jitted:
            trainable, optimizer_values = step(trainable, optimizer_values, bx, by)
            trajectory.append([np.array(t) for t in trainable])
        else:
            grads = jax.grad(loss)([v.value for v in model.trainable_variables], bx, by)
            optimizer.apply(grads, model.trainable_variables)
            trajectory.append(model.get_weights())
    harness.assert_trajectories_equal(trajectory, expected("momentum", 3, 0.5, x, y))
