"""State that survives: get/set/save/load, exact resume in a fresh process, recompile,
the slow weights in use, interrupted training."""

import gc
import os
import weakref

import numpy as np
import pytest

import harness
import reference
from lookahead_inject import InvalidArgumentError, inject
from common import expected


def test_get_state_holds_step_slow_weights_k_and_alpha():
    model, la = harness.trained(steps=4, k=3)
    got = la.get_state()
    assert sorted(got) == ["alpha", "k", "momentum_cache", "optimizer_state", "slow_weights",
                           "step"]
    assert (got["optimizer_state"], got["momentum_cache"]) == ("keep", [])
    assert (got["step"], got["k"], got["alpha"]) == (4, 3, 0.5)
    # After step 3 (the sync) fast == slow, and step 4 moved only the fast weights.
    want = expected("sgd", 3, 0.5, *harness.data(), steps=3)[-1]
    harness.assert_trajectories_equal([got["slow_weights"]], [want])


def test_before_the_first_step_the_slow_weights_are_the_fast_ones():
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model)
    assert la.get_state()["step"] == 0
    harness.assert_trajectories_equal([la.get_state()["slow_weights"]], [harness.start_weights()])


def test_set_state_continues_where_get_state_was_taken():
    model, la = harness.trained(steps=4)
    twin = harness.mlp("sgd", model.get_weights())
    twin_la = inject(twin, k=3, alpha=0.5)
    twin_la.set_state(la.get_state())
    x, y = harness.data()
    for bx, by in harness.epoch_batches(x, y)[4:9]:
        model.train_on_batch(bx, by)
        twin.train_on_batch(bx, by)
    harness.assert_trajectories_equal([twin.get_weights()], [model.get_weights()], atol=1e-6)
    assert twin_la.step == la.step == 9


@pytest.mark.parametrize("name", ["state", "state.npz", "state.bin"])
def test_save_and_load_use_exactly_the_given_path(name, tmp_path):
    model, la = harness.trained(steps=4)
    path = str(tmp_path / name)
    la.save(path)
    assert os.listdir(str(tmp_path)) == [name]
    other, other_la = harness.trained(steps=1)
    other_la.load(path)
    saved, loaded = la.get_state(), other_la.get_state()
    assert loaded["step"] == saved["step"]
    harness.assert_trajectories_equal([loaded["slow_weights"]], [saved["slow_weights"]], atol=0)


def test_load_refuses_another_k_or_alpha(tmp_path):
    _, la = harness.trained(k=3, alpha=0.5)
    la.save(str(tmp_path / "s"))
    _, other = harness.trained(k=4, alpha=0.5)
    with pytest.raises(InvalidArgumentError, match=r"k=3, alpha=0.5, this Lookahead has k=4"):
        other.load(str(tmp_path / "s"))


def test_set_state_refuses_another_model_shape():
    _, la = harness.trained()
    wide = harness.keras.Sequential([harness.keras.layers.Dense(9, activation="tanh", input_shape=(4,)),
                                harness.keras.layers.Dense(1)])
    wide.compile(optimizer=harness.optimizer("sgd"), loss="mse")
    other = inject(wide, k=3, alpha=0.5)
    with pytest.raises(InvalidArgumentError, match=r"slow weight 0 is float32 \(4, 8\).*\(4, 9\)"):
        other.set_state(la.get_state())


def test_load_refuses_a_file_that_is_no_state(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"not an archive")
    _, la = harness.trained()
    with pytest.raises(InvalidArgumentError, match="not a Lookahead state file"):
        la.load(str(path))


def resume_formats():
    formats = ["h5_and_state_file"]
    if not (harness.KERAS_3 or harness.STANDALONE):     # neither writes TF-format weights
        formats.append("tf_weights")
    if not harness.GRAPH and not harness.KERAS3_WITHOUT_TF:
        formats.append("checkpoint")
    if harness.KERAS_3:
        formats.append("keras3_weights_and_state_file")
    return formats


def resume_cases():
    for fmt in resume_formats():
        # Keras 2 .h5 weights hold no optimizer state: there only plain SGD resumes
        # exactly; TF checkpoints and Keras 3's .weights.h5 (into a built optimizer)
        # hold Adam's moments and iteration count too.
        yield fmt, "sgd" if fmt == "h5_and_state_file" else "adam"


def assert_resumed_like_uninterrupted(opt, folder):
    """The resumed run's final weights and step are numpy Lookahead's after all 9 steps."""
    got, step = harness.resumed_weights(folder)
    assert step == 9
    want = expected(opt, 3, 0.5, *harness.data(), steps=9)[-1]
    harness.assert_trajectories_equal([got], [want], atol=1e-6)


@pytest.mark.parametrize("fmt,opt", list(resume_cases()))
def test_resume_in_a_fresh_process_is_exact(fmt, opt, tmp_path):
    harness.resume_in_fresh_processes(fmt, opt, tmp_path)
    assert_resumed_like_uninterrupted(opt, tmp_path)


@pytest.mark.parametrize("fmt", [fmt for fmt in resume_formats()
                                 if fmt in ("tf_weights", "checkpoint")])
def test_a_model_without_weights_resumes_from_a_tf_checkpoint_exactly(fmt, tmp_path):
    # The checkpoint's restore waits for the weights and the slow copies the first step
    # makes; the slow weights are then the checkpoint's, not the fast ones.
    harness.resume_in_fresh_processes(fmt, "adam", tmp_path, model="unbuilt")
    assert_resumed_like_uninterrupted("adam", tmp_path)


@pytest.mark.parametrize("new_optimizer", [False, True])
def test_compile_after_inject_keeps_lookahead(new_optimizer):
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2, alpha=0.5)
    weights = harness.train(model, "train_on_batch", x, y, epochs=1)
    model.compile(optimizer=harness.optimizer("sgd") if new_optimizer else model.optimizer,
                  loss="mse")
    weights += harness.train(model, "fit", x, y, epochs=2)
    harness.assert_trajectories_equal(weights, expected("sgd", 2, 0.5, x, y, steps=9))


def test_a_trained_injected_model_is_freed_like_a_plain_one():
    # Dropping the handle as well must free the model: nothing of lookahead_inject may
    # keep it (and its weights, slow copy included) alive until the process ends.
    def freed(with_lookahead):
        model, la = harness.trained() if with_lookahead else (harness.mlp("sgd"), None)
        model.fit(*harness.data(), batch_size=harness.BATCH, verbose=0)
        gone = weakref.ref(model)
        del model, la
        gc.collect()
        return gone() is None
    if not freed(with_lookahead=False):
        # tf-keras 2.16 (TF 2.16, the sweep of 146f1e9) keeps a trained plain model alive
        # too: there is nothing to be freed "like".
        pytest.skip("{}: a trained plain model is not freed either".format(
            harness.ENVIRONMENT.describe()))
    assert freed(with_lookahead=True)


def test_slow_weights_block_swaps_in_and_restores_even_on_error():
    model, la = harness.trained(steps=4)
    fast, slow = model.get_weights(), la.get_state()["slow_weights"]
    x, y = harness.data()
    with la.slow_weights() as inside:
        assert inside is model
        harness.assert_trajectories_equal([model.get_weights()], [slow], atol=0)
        twin = harness.mlp("sgd", slow)
        np.testing.assert_allclose(model.evaluate(x, y, verbose=0), twin.evaluate(x, y, verbose=0),
                                   atol=1e-6)
    harness.assert_trajectories_equal([model.get_weights()], [fast], atol=0)
    with pytest.raises(ZeroDivisionError):
        with la.slow_weights():
            1 / 0
    harness.assert_trajectories_equal([model.get_weights()], [fast], atol=0)


@pytest.mark.parametrize("at", ["epoch", "fit"])
def test_sync_callback_leaves_the_lookahead_weights_in_the_model(at):
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=5, alpha=0.5)
    recorder = harness.RecordWeights()
    model.fit(x, y, batch_size=harness.BATCH, epochs=3, shuffle=False, verbose=0,
              callbacks=[recorder, la.sync_callback(at)])
    forced = (3, 6, 9) if at == "epoch" else (9,)
    batches = harness.epoch_batches(x, y, 3)
    want = reference.mlp_trajectory(harness.start_weights(), batches, reference.OPTIMIZERS["sgd"](),
                                    5, 0.5, force_sync_after=forced)
    harness.assert_trajectories_equal([model.get_weights()], [want[-1]])
    assert la.step == 9


def test_interrupted_fit_resumes_to_the_uninterrupted_result():
    x, y = harness.data()
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=3, alpha=0.5)

    class Interrupt(harness.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:                      # the user hits Ctrl-C during step 2 of epoch 2
                raise KeyboardInterrupt

        on_batch_end = on_train_batch_end       # keras 2.2.4 calls only on_batch_end
    model.fit(x, y, batch_size=harness.BATCH, epochs=1, shuffle=False, verbose=0)      # 3 steps
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=harness.BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[Interrupt()])                                              # 2 steps
    assert la.step == 5
    for bx, by in harness.epoch_batches(x, y)[5:9]:
        model.train_on_batch(bx, by)
    harness.assert_trajectories_equal([model.get_weights()], [expected("momentum", 3, 0.5, x, y, steps=9)[-1]])


@pytest.mark.skipif(harness.KERAS_3, reason="Keras 3 (any backend) writes no TF-format "
                    "save_weights; its resumes are tested above")
def test_checkpoint_from_before_training_restarts_lookahead_from_its_weights(tmp_path):
    harness.skip_standalone("saves weights to HDF5 only, which hold no Lookahead step")
    # Restoring a checkpoint saved before the first step puts the step back to 0:
    # the slow weights are taken again, from the restored weights.
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=2, alpha=0.0)
    model.save_weights(str(tmp_path / "ckpt"))                 # TF format, step 0
    harness.train(model, "train_on_batch", x[:16], y[:16], epochs=3)     # 3 steps
    model.load_weights(str(tmp_path / "ckpt"))
    harness.train(model, "train_on_batch", x[:32], y[:32], epochs=1)     # 2 steps: back to start
    harness.assert_trajectories_equal([model.get_weights()], [harness.start_weights()], atol=1e-6)


def test_state_read_from_a_callback_during_fit_is_the_true_state(execution):
    # Keras 3 on JAX keeps the training state in arrays of its own during fit and writes
    # it to the variables only when asked: step, get_state and slow_weights() read from
    # a callback must still see the state after this very step, and the swap in and out
    # of slow_weights() must not disturb the training that goes on.
    x, y = harness.data()
    model = harness.mlp("momentum", harness.start_weights(), execution)
    la = inject(model, k=3, alpha=0.5)
    seen = []

    class Read(harness.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            slow = la.get_state()["slow_weights"]
            with la.slow_weights():
                swapped_in = self.model.get_weights()
            seen.append((la.step, slow, swapped_in, self.model.get_weights()))

        if harness.STANDALONE:
            on_batch_end = on_train_batch_end     # Keras 2.2 calls only on_batch_end
    model.fit(x, y, batch_size=harness.BATCH, epochs=harness.EPOCHS, shuffle=False, verbose=0,
              callbacks=[Read()])
    fast = expected("momentum", 3, 0.5, x, y)
    assert [step for step, _, _, _ in seen] == list(range(1, harness.STEPS + 1))
    for n, (_, slow, swapped_in, after) in enumerate(seen, 1):
        # After step n the slow weights are those of the last sync (fast == slow there).
        want_slow = fast[n // 3 * 3 - 1] if n >= 3 else harness.start_weights()
        harness.assert_trajectories_equal([slow, swapped_in, after],
                                          [want_slow, want_slow, fast[n - 1]])
    harness.assert_trajectories_equal([model.get_weights()], [fast[-1]])
