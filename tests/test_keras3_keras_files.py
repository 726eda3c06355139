"""Nothing of Lookahead is lost when Keras saves: Keras' own files and callbacks resume it.

Keras 3 (TensorFlow, JAX, PyTorch): a run interrupted and resumed through
``BackupAndRestore`` (every epoch, and every 4 batches: a cut inside an epoch and inside a
Lookahead cycle), ``ModelCheckpoint`` (``.keras``, and ``save_weights_only`` to
``.weights.h5``) or ``model.save(".keras")``, each followed by ``load_weights`` into a fresh
injected model, ends where the run without the interruption ends, and where the numpy
reference does (1e-5), with every step counted. The state rides in a section of its own
(backends/common/keras3_files.py), so a file written with Lookahead loads into a plain model in
a process without lookahead_inject with all weights and the optimizer's own state, and a
plain file into an injected model, where Lookahead starts at the next step, from the
loaded weights, with one log line; neither direction changes the optimizer's own
section (Keras 3 skips all of it when its variable count differs).

tf-keras / Keras 2 in eager mode: ``BackupAndRestore`` (TF checkpoints) resumes exactly too.

Each fit is at most 16 steps of the tiny MLP (3 batches per epoch, k=5: epoch ends and
syncs never coincide); the runs are shared by the tests that look at them.
"""

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import harness
from common import WORKERS
import keras3_support as support
import reference

BACKEND, KERAS3_SKIP = support.keras3_backend_or_skip_reason()
keras3_only = pytest.mark.skipif(KERAS3_SKIP is not None, reason=KERAS3_SKIP or "")

HERE = os.path.dirname(os.path.abspath(__file__))
K, ALPHA, OPT, EPOCHS = 5, 0.5, "momentum", 5
#: The first run trains 2 epochs (6 steps: a cycle of 5 and 1 step of the next) before
#: the file it resumes from is written; "every 4 batches" writes it after step 4.
RESUMES = ("backup_every_epoch", "backup_every_4_batches", "checkpoint_keras",
           "checkpoint_weights_only", "model_save_keras")
_RUNS = {}


class Interrupted(Exception):
    pass


def interrupt_after(steps):
    """A callback that stops fit with Interrupted after ``steps`` steps (after every
    other callback of that step, BackupAndRestore's save included)."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == steps and steps % support.STEPS_PER_EPOCH:
                raise Interrupted()

        def on_epoch_end(self, epoch, logs=None):
            if self.seen == steps:
                raise Interrupted()
    return Interrupt()


def fit(model, epochs, callbacks=()):
    x, y = support.data()
    model.fit(x, y, batch_size=support.BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks))


def fresh_injected():
    """A new model (its own random weights), compiled and injected."""
    from lookahead_inject import inject
    model = support.mlp(OPT)
    return model, inject(model, k=K, alpha=ALPHA)


def interrupted_and_resumed(how, folder):
    """(weights, slow weights, step, the batches trained in order) of a run interrupted
    and resumed as ``how`` says."""
    import keras
    from lookahead_inject import inject
    first = support.mlp(OPT, support.start_weights())
    inject(first, k=K, alpha=ALPHA)
    batches = support.epoch_batches(*support.data(), epochs=EPOCHS)
    backup = os.path.join(folder, "backup")
    if how.startswith("backup"):
        every = 4 if how == "backup_every_4_batches" else "epoch"
        steps = 4 if every == 4 else 2 * support.STEPS_PER_EPOCH
        with pytest.raises(Interrupted):
            fit(first, EPOCHS, [keras.callbacks.BackupAndRestore(backup, save_freq=every),
                                interrupt_after(steps)])
        model, la = fresh_injected()
        fit(model, EPOCHS, [keras.callbacks.BackupAndRestore(backup, save_freq=every)])
        if every == 4:
            # Keras 3 restores the epoch, not the batch: the epoch the cut fell in runs
            # again from its first batch (with or without Lookahead).
            batches = batches[:steps] + support.epoch_batches(
                *support.data(), epochs=EPOCHS - steps // support.STEPS_PER_EPOCH)
    else:
        path = os.path.join(folder, "ck.weights.h5" if how == "checkpoint_weights_only"
                            else "ck.keras")
        callbacks = [] if how == "model_save_keras" else [keras.callbacks.ModelCheckpoint(
            path, save_weights_only=how == "checkpoint_weights_only")]
        fit(first, 2, callbacks)
        if how == "model_save_keras":
            first.save(path)
        model, la = fresh_injected()
        # Keras 3 loads an optimizer's saved variables only into a built optimizer
        # (BackupAndRestore builds it itself).
        model.optimizer.build(model.trainable_variables)
        model.load_weights(path)
        fit(model, EPOCHS - 2)
    return model.get_weights(), la.get_state()["slow_weights"], la.step, batches


def resumed(how, tmp_path_factory):
    if how not in _RUNS:
        _RUNS[how] = interrupted_and_resumed(how, str(tmp_path_factory.mktemp(how)))
    return _RUNS[how]


def uninterrupted(batches):
    """(weights, slow weights) of one fit over ``batches``, from the same start."""
    key = ("uninterrupted", len(batches))
    if key not in _RUNS:
        from lookahead_inject import inject
        model = support.mlp(OPT, support.start_weights())
        la = inject(model, k=K, alpha=ALPHA)
        x, y = (np.concatenate(part) for part in zip(*batches))
        model.fit(x, y, batch_size=support.BATCH, epochs=1, shuffle=False, verbose=0)
        _RUNS[key] = model.get_weights(), la.get_state()["slow_weights"]
    return _RUNS[key]


@keras3_only
@pytest.mark.parametrize("how", RESUMES)
def test_a_resumed_run_ends_with_the_weights_and_slow_weights_of_the_uninterrupted_run(
        how, tmp_path_factory):
    weights, slow, _, batches = resumed(how, tmp_path_factory)
    want_weights, want_slow = uninterrupted(batches)
    support.assert_close(weights, want_weights, "weights")
    support.assert_close(slow, want_slow, "slow weights")


@keras3_only
@pytest.mark.parametrize("how", RESUMES)
def test_a_resumed_run_ends_with_the_weights_and_slow_weights_of_the_numpy_reference(
        how, tmp_path_factory):
    weights, slow, _, batches = resumed(how, tmp_path_factory)
    want_weights, want_slow = support.expected_with_slow(OPT, K, ALPHA, batches)[-1]
    support.assert_close(weights, want_weights, "weights")
    support.assert_close(slow, want_slow, "slow weights")


@keras3_only
@pytest.mark.parametrize("how", RESUMES)
def test_a_resumed_run_counts_every_step_before_and_after_the_interruption(
        how, tmp_path_factory):
    _, _, step, batches = resumed(how, tmp_path_factory)
    assert step == len(batches)


# -- files written with and without Lookahead load into each other ---------------------

def write_files(folder, with_lookahead, steps=4):
    """A model trained ``steps`` steps from the start weights (injected or not) saves
    m.keras and w.weights.h5 into ``folder``; returns it."""
    from lookahead_inject import inject
    model = support.mlp(OPT, support.start_weights())
    if with_lookahead:
        inject(model, k=K, alpha=ALPHA)
    for x, y in support.epoch_batches(*support.data(), epochs=2)[:steps]:
        model.train_on_batch(x, y)
    model.save(os.path.join(folder, "m.keras"))
    model.save_weights(os.path.join(folder, "w.weights.h5"))
    return model


def own_optimizer_values(model):
    """The optimizer's own variables (on JAX / PyTorch the Lookahead ones, lookahead_*, sit
    beside them and are not in its file section)."""
    from keras import ops
    return [np.array(ops.convert_to_numpy(v.value)) for v in model.optimizer.variables
            if "lookahead_" not in v.path]


def plain_process_loads(tmp_path_factory):
    """(the writer's weights and optimizer values, what the worker loaded)."""
    if "plain_process" not in _RUNS:
        folder = str(tmp_path_factory.mktemp("plain_process"))
        model = write_files(folder, with_lookahead=True)
        written = model.get_weights(), own_optimizer_values(model)
        subprocess.run([sys.executable, os.path.join(WORKERS, "keras3_plain_load_worker.py"),
                        folder], cwd=HERE, check=True, timeout=300)
        with np.load(os.path.join(folder, "plain_loads.npz")) as loaded:
            _RUNS["plain_process"] = written, dict(loaded)
    return _RUNS["plain_process"]


def loaded(values, way, kind):
    count = len([key for key in values if key.startswith("{}/{}_".format(way, kind))])
    return [values["{}/{}_{}".format(way, kind, i)] for i in range(count)]


PLAIN_LOADS = ("load_model_keras", "load_weights_keras", "load_weights_weights_h5")


@keras3_only
@pytest.mark.parametrize("way", PLAIN_LOADS)
def test_a_file_written_with_lookahead_gives_a_process_without_it_every_weight(
        way, tmp_path_factory):
    (weights, _), values = plain_process_loads(tmp_path_factory)
    support.assert_close(loaded(values, way, "weight"), weights, "weights", atol=0)


@keras3_only
@pytest.mark.parametrize("way", PLAIN_LOADS)
def test_a_file_written_with_lookahead_gives_a_process_without_it_the_optimizer_state(
        way, tmp_path_factory):
    (_, optimizer_values), values = plain_process_loads(tmp_path_factory)
    support.assert_close(loaded(values, way, "optimizer"), optimizer_values,
                         "optimizer variables (iterations, momentum)", atol=0)


@keras3_only
@pytest.mark.parametrize("way", PLAIN_LOADS)
def test_a_file_written_with_lookahead_loads_in_a_process_without_it_without_warning(
        way, tmp_path_factory):
    _, values = plain_process_loads(tmp_path_factory)
    assert [w for w in values["{}/warnings".format(way)] if w] == []


def h5_datasets(path):
    import h5py
    found = []
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, item: found.append(name)
                      if isinstance(item, h5py.Dataset) else None)
    return set(found)


@keras3_only
def test_a_weights_file_written_with_lookahead_adds_only_its_own_section(tmp_path):
    # The optimizer's section keeps its variable count: Keras 3 would skip all of it.
    (tmp_path / "plain").mkdir()
    (tmp_path / "lookahead").mkdir()
    write_files(str(tmp_path / "plain"), with_lookahead=False)
    write_files(str(tmp_path / "lookahead"), with_lookahead=True)
    plain = h5_datasets(str(tmp_path / "plain" / "w.weights.h5"))
    with_lookahead = h5_datasets(str(tmp_path / "lookahead" / "w.weights.h5"))
    assert with_lookahead - plain == {"optimizer/lookahead_inject/vars/state"}
    assert plain <= with_lookahead


PLAIN_STEPS, LOOKAHEAD_STEPS = 4, 7


def injected_model_loading_a_plain_file(file, folder):
    """(model, handle) after an injected model that trained 2 steps of its own (so its
    Lookahead has a step count and slow weights to forget) loaded ``file`` of a model
    trained PLAIN_STEPS steps without Lookahead; a Keras "Skipping variable loading"
    warning (a lost optimizer state) fails the load."""
    write_files(folder, with_lookahead=False, steps=PLAIN_STEPS)
    model, la = fresh_injected()
    for x, y in support.epoch_batches(*support.data(seed=2), epochs=1)[:2]:
        model.train_on_batch(x, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Skipping variable loading")
        model.load_weights(os.path.join(folder, file))
    return model, la


@keras3_only
@pytest.mark.parametrize("file", ["m.keras", "w.weights.h5"])
def test_a_plain_file_loaded_into_an_injected_model_is_logged_once(file, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lookahead_inject"):
        injected_model_loading_a_plain_file(file, str(tmp_path))
    said = [r.getMessage() for r in caplog.records if r.name == "lookahead_inject"]
    assert len(said) == 1 and "no Lookahead state" in said[0], said


@keras3_only
@pytest.mark.parametrize("file", ["m.keras", "w.weights.h5"])
def test_a_plain_file_loaded_into_an_injected_model_starts_lookahead_at_the_next_step(
        file, tmp_path):
    model, la = injected_model_loading_a_plain_file(file, str(tmp_path))
    batches = support.epoch_batches(*support.data(), epochs=4)[:PLAIN_STEPS + LOOKAHEAD_STEPS]
    for x, y in batches[PLAIN_STEPS:]:
        model.train_on_batch(x, y)
    # numpy: the plain steps, then Lookahead from the weights they left, the optimizer
    # (its momentum, loaded from the file) carrying on.
    params = [np.asarray(p, np.float64) for p in support.start_weights()]
    optimizer, lookahead = reference.OPTIMIZERS[OPT](), reference.LookaheadSim(K, ALPHA)
    for i, (x, y) in enumerate(batches):
        if i >= PLAIN_STEPS:
            lookahead.before_fast_step(params, range(len(params)))
        params = optimizer.step(params, reference.mlp_grads(params, x.astype(np.float64),
                                                            y.astype(np.float64)))
        if i >= PLAIN_STEPS:
            params = lookahead.after_fast_step(params)
    assert la.step == LOOKAHEAD_STEPS
    support.assert_close(model.get_weights(), params, "weights")
    support.assert_close(la.get_state()["slow_weights"], [lookahead.slow[i] for i in range(4)],
                         "slow weights")


@keras3_only
@pytest.mark.parametrize("file", ["m.keras", "w.weights.h5"])
def test_a_file_gives_an_injected_model_the_whole_pullback_state(file, tmp_path):
    # optimizer_state="pullback" adds a momentum copy per weight to the state.
    from lookahead_inject import inject
    model = support.mlp(OPT, support.start_weights())
    la = inject(model, k=K, alpha=ALPHA, optimizer_state="pullback")
    for x, y in support.epoch_batches(*support.data(), epochs=3)[:7]:     # a sync at step 5
        model.train_on_batch(x, y)
    model.save(str(tmp_path / "m.keras"))
    model.save_weights(str(tmp_path / "w.weights.h5"))
    want = la.get_state()
    resumed = support.mlp(OPT)
    resumed_la = inject(resumed, k=K, alpha=ALPHA, optimizer_state="pullback")
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(str(tmp_path / file))
    got = resumed_la.get_state()
    assert got["step"] == want["step"] == 7
    support.assert_close(got["slow_weights"], want["slow_weights"], "slow weights", atol=0)
    support.assert_close(got["momentum_cache"], want["momentum_cache"], "momentum copies",
                         atol=0)


@keras3_only
def test_a_file_written_after_compile_with_a_new_optimizer_carries_the_state(tmp_path):
    # The section moves to the optimizer compile() brings: the file takes it from there.
    from lookahead_inject import inject
    model = support.mlp(OPT, support.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    batches = support.epoch_batches(*support.data(), epochs=3)[:7]
    for x, y in batches[:3]:
        model.train_on_batch(x, y)
    model.compile(optimizer=support.optimizer("adam"), loss="mse")
    for x, y in batches[3:]:
        model.train_on_batch(x, y)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    want = la.get_state()
    resumed = support.mlp("adam")
    resumed_la = inject(resumed, k=K, alpha=ALPHA)
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(str(tmp_path / "w.weights.h5"))
    assert resumed_la.step == want["step"] == 7
    support.assert_close(resumed_la.get_state()["slow_weights"], want["slow_weights"],
                         "slow weights", atol=0)


@keras3_only
@pytest.mark.parametrize("problem", ["damaged", "other_k"])
def test_a_lookahead_section_that_cannot_be_resumed_is_refused_with_the_fix(problem, tmp_path):
    import h5py
    from lookahead_inject import inject
    path = str(tmp_path / "w.weights.h5")
    write_files(str(tmp_path), with_lookahead=True)
    if problem == "damaged":
        with h5py.File(path, "r+") as h5:
            data = h5["optimizer/lookahead_inject/vars/state"]
            data[-40] ^= 1          # a bit of the last slow weight
    model = support.mlp(OPT)
    inject(model, k=K + 1 if problem == "other_k" else K, alpha=ALPHA)
    model.optimizer.build(model.trainable_variables)
    # Keras 3 reports a section's error inside its own ValueError, with its text.
    with pytest.raises(ValueError) as raised:
        model.load_weights(path)
    fix = ("load an undamaged copy of the file" if problem == "damaged"
           else "inject with the saved k and alpha")
    assert fix in str(raised.value)


# -- tf-keras / Keras 2 -------------------------------------------------------------

def keras2_eager_skip_reason():
    if harness.KERAS3_WITHOUT_TF or harness.KERAS_3:
        return "{}: Keras 3, whose BackupAndRestore the tests above cover".format(
            harness.ENVIRONMENT.describe())
    if harness.STANDALONE or harness.GRAPH:
        return "{}: BackupAndRestore needs tf.keras in eager mode (TF 2.8+)".format(
            harness.ENVIRONMENT.describe())
    if not hasattr(harness.keras.callbacks, "BackupAndRestore"):
        return "TF {} has no tf.keras.callbacks.BackupAndRestore".format(harness.tf.__version__)
    return None


def test_keras2_backup_and_restore_resumes_lookahead_exactly(tmp_path):
    # Every epoch only: with an integer save_freq, Keras 2.15's and tf-keras 2.21's own
    # resume inside an epoch matches no sequence of batches even without Lookahead
    # (plain SGD ends 0.01 away from each), so there is no exact run to compare with.
    reason = keras2_eager_skip_reason()
    if reason:
        pytest.skip(reason)
    from lookahead_inject import inject
    keras = harness.keras
    x, y = harness.data()
    backup = str(tmp_path / "backup")
    first = harness.mlp(OPT, harness.start_weights())
    inject(first, k=K, alpha=ALPHA)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:      # after 2 epochs, 6 steps: inside the second cycle of 5
                raise Interrupted()
    with pytest.raises(Interrupted):
        first.fit(x, y, batch_size=harness.BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), Interrupt()])
    model = harness.mlp(OPT)
    la = inject(model, k=K, alpha=ALPHA)
    model.fit(x, y, batch_size=harness.BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup)])
    batches = harness.epoch_batches(x, y, EPOCHS)
    want_weights, want_slow = support.expected_with_slow(OPT, K, ALPHA, batches)[-1]
    assert la.step == len(batches)
    support.assert_close(model.get_weights(), want_weights, "weights")
    support.assert_close(la.get_state()["slow_weights"], want_slow, "slow weights")


def test_keras2_backup_and_restore_every_few_batches_restores_the_state_of_its_backup(tmp_path):
    # What Keras 2 resumes from a mid-epoch backup is Keras' own affair (see the test
    # above); what Lookahead owes it is the state of that backup: the step count and the
    # slow weights at the batch the backup was written, restored before the first step.
    reason = keras2_eager_skip_reason()
    if reason:
        pytest.skip(reason)
    if harness.tf_older_than(2, 11):
        pytest.skip("TF {}: BackupAndRestore takes save_freq from TF 2.11".format(
            harness.tf.__version__))
    from lookahead_inject import inject
    keras = harness.keras
    x, y = harness.data()
    backup = str(tmp_path / "backup")
    first = harness.mlp(OPT, harness.start_weights())
    first_la = inject(first, k=K, alpha=ALPHA)
    states = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            states[first_la.step] = (first.get_weights(), first_la.get_state()["slow_weights"])
            if first_la.step == 8:      # backups after steps 3 and 6: inside the second cycle
                raise Interrupted()
    with pytest.raises(Interrupted):
        first.fit(x, y, batch_size=harness.BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=3), Record()])
    model = harness.mlp(OPT)
    la = inject(model, k=K, alpha=ALPHA)
    restored = []

    class Capture(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            restored.append((la.step, model.get_weights(), la.get_state()["slow_weights"]))
            raise Interrupted()
    with pytest.raises(Interrupted):
        model.fit(x, y, batch_size=harness.BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=3), Capture()])
    step, weights, slow = restored[0]
    assert step == 6
    support.assert_close(weights, states[6][0], "weights of the backup")
    support.assert_close(slow, states[6][1], "slow weights of the backup")
