"""Nothing of Lookahead is lost when Keras 2 writes HDF5: tf.keras / tf-keras (TF 1.x graph,
TF 2 graph and eager) and standalone Keras 2.2 / 2.3, ``model.save("m.h5")`` and
``model.save_weights("w.h5")`` (backends/common/h5_files.py).

A run interrupted after step 4 (mid-cycle, k=3) and resumed through either file by
``load_weights`` into a fresh injected model ends where the uninterrupted run ends and where
the numpy reference does, with every step counted (plain SGD: Keras 2's ``load_weights``
restores no optimizer state, with or without Lookahead). The state rides in a dataset of
its own at the file's root, which Keras never reads: a file written with Lookahead loads
into a plain model (also by ``keras.models.load_model`` in a process without
lookahead_inject) with all weights and the optimizer's own state and no warning, and a
plain file into an injected model, where Lookahead starts at the next step from the loaded
weights, with one log line. A format that has no place for the state (Keras 2.13+'s
``.keras`` zip) warns once when it is written.

The tiny MLP, at most 9 steps per run.
"""

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import harness
import reference
import lookahead_inject
from lookahead_inject import NoLookaheadStateWarning, StateFileError, inject
from common import WORKERS, expected

HERE = os.path.dirname(os.path.abspath(__file__))
K, ALPHA, FIRST, SECOND = 3, 0.5, 4, 5        # saved after step 4: inside a cycle of 3
FILES = ("model_save_h5", "save_weights_h5")
#: Keras 2.13+ write save_weights(".weights.h5") in their new format (saving_lib), also
#: HDF5; in eager mode only (it reads values with numpy()).
NEW_FORMAT = () if (harness.STANDALONE or harness.KERAS_3 or harness.KERAS3_WITHOUT_TF
                    or harness.GRAPH or harness.tf_older_than(2, 13)) else ("save_weights_weights_h5",)


def _keras3_reason():
    if harness.KERAS3_WITHOUT_TF or harness.KERAS_3:
        return "{}: Keras 3's files carry the state through _keras3_files " \
               "(test_keras3_keras_files.py)".format(harness.ENVIRONMENT.describe())
    return None


pytestmark = pytest.mark.skipif(_keras3_reason() is not None, reason=str(_keras3_reason()))


def batches():
    x, y = harness.data()
    return harness.epoch_batches(x, y)[:FIRST + SECOND]


def save(model, file, folder):
    """Writes ``file`` of ``model`` into ``folder``; returns its path."""
    path = os.path.join(str(folder), {"model_save_h5": "m.h5", "save_weights_h5": "w.h5",
                                      "save_weights_weights_h5": "w.weights.h5"}[file])
    (model.save if file == "model_save_h5" else model.save_weights)(path)
    return path


def written_with_lookahead(opt, folder):
    """An injected model trained FIRST steps, saved as m.h5 and w.h5 in ``folder``."""
    model = harness.mlp(opt, harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    for bx, by in batches()[:FIRST]:
        model.train_on_batch(bx, by)
    for file in FILES:
        save(model, file, folder)
    return model, la


def optimizer_values(optimizer):
    # OptimizerV2 and standalone Keras: weights; Keras 2.11+'s optimizers: variables.
    variables = getattr(optimizer, "weights", None)
    return harness.get_values(list(variables if variables is not None else optimizer.variables))


def lookahead_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, NoLookaheadStateWarning)]


@pytest.mark.parametrize("file", FILES + NEW_FORMAT)
def test_a_run_resumed_from_the_file_ends_where_the_uninterrupted_run_and_numpy_do(file, tmp_path):
    steps = batches()
    whole = harness.mlp("sgd", harness.start_weights())
    inject(whole, k=K, alpha=ALPHA)
    uninterrupted = []
    for bx, by in steps:
        whole.train_on_batch(bx, by)
        uninterrupted.append(whole.get_weights())
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=K, alpha=ALPHA)
    for bx, by in steps[:FIRST]:
        model.train_on_batch(bx, by)
    path = save(model, file, tmp_path)
    resumed = harness.mlp("sgd")                     # compiled, injected, fresh
    resumed_la = inject(resumed, k=K, alpha=ALPHA)
    resumed.load_weights(path)
    assert resumed_la.step == FIRST
    trajectory = []
    for bx, by in steps[FIRST:]:
        resumed.train_on_batch(bx, by)
        trajectory.append(resumed.get_weights())
    assert resumed_la.step == FIRST + SECOND
    harness.assert_trajectories_equal(trajectory, uninterrupted[FIRST:], atol=1e-6)
    harness.assert_trajectories_equal(trajectory, expected("sgd", K, ALPHA, *harness.data(),
                                                           steps=FIRST + SECOND)[FIRST:])


def test_load_model_gives_the_loaded_model_the_lookahead_of_the_file(tmp_path):
    steps = batches()
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=K, alpha=ALPHA)
    for bx, by in steps[:FIRST]:
        model.train_on_batch(bx, by)
    path = save(model, "model_save_h5", tmp_path)
    # Standalone Keras' own SGD races with itself (harness.gradients_first): the tests' one,
    # through load_model's arguments, which go to Keras' loader.
    custom = {"SGD": type(harness.optimizer("sgd"))} if harness.STANDALONE else {}
    loaded = lookahead_inject.load_model(path, loader=harness.keras.models.load_model,
                                         custom_objects=custom)
    la = lookahead_inject.of(loaded)
    assert (la.k, la.alpha, la.step) == (K, ALPHA, FIRST)
    assert inject(loaded, k=K, alpha=ALPHA) is la        # finds it, starts no other
    trajectory = []
    for bx, by in steps[FIRST:]:
        loaded.train_on_batch(bx, by)
        trajectory.append(loaded.get_weights())
    harness.assert_trajectories_equal(trajectory, expected("sgd", K, ALPHA, *harness.data(),
                                                           steps=FIRST + SECOND)[FIRST:])


def test_load_model_of_a_plain_file_warns_that_it_holds_no_lookahead(tmp_path):
    model = harness.mlp("sgd", harness.start_weights())
    path = save(model, "model_save_h5", tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = lookahead_inject.load_model(path, loader=harness.keras.models.load_model)
    assert lookahead_inject.of(loaded) is None
    assert any("holds no Lookahead state" in w for w in lookahead_warnings(caught))


@pytest.mark.parametrize("file", FILES)
def test_writing_the_file_with_lookahead_gives_no_lookahead_warning(file, tmp_path):
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=K, alpha=ALPHA)
    model.train_on_batch(*batches()[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save(model, file, tmp_path)
    assert lookahead_warnings(caught) == []


@pytest.mark.parametrize("file", FILES)
def test_a_file_written_with_lookahead_loads_into_a_plain_model_without_a_warning(file, tmp_path):
    writer, _ = written_with_lookahead("sgd", tmp_path)
    plain = harness.mlp("sgd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain.load_weights(os.path.join(str(tmp_path), "m.h5" if file == "model_save_h5"
                                        else "w.h5"))
    assert [str(w.message) for w in caught
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))] == []
    harness.assert_trajectories_equal([plain.get_weights()], [writer.get_weights()], atol=0)


def plain_loads(tmp_path):
    """The files of a momentum run with Lookahead, loaded by the worker (no lookahead_inject)."""
    writer, _ = written_with_lookahead("momentum", tmp_path)
    mode = "graph" if harness.GRAPH else "eager"
    subprocess.run([sys.executable, os.path.join(WORKERS, "h5_plain_load_worker.py"),
                    str(tmp_path), mode, "standalone" if harness.STANDALONE else "tf.keras"],
                   cwd=HERE, check=True, timeout=300)
    with np.load(str(tmp_path / "plain_loads.npz")) as loaded:
        return writer, dict(loaded)


@pytest.mark.parametrize("way", ["load_model_m_h5", "load_weights_m_h5", "load_weights_w_h5"])
def test_a_process_without_lookahead_inject_loads_the_file_with_all_its_state(way, tmp_path):
    writer, loaded = plain_loads(tmp_path)
    weights = [loaded["{}/weight_{}".format(way, i)] for i in range(len(writer.get_weights()))]
    harness.assert_trajectories_equal([weights], [writer.get_weights()], atol=0)
    if way == "load_model_m_h5":                # the optimizer's own state: momentum, count
        saved = optimizer_values(writer.optimizer)
        got = sorted(key for key in loaded if key.startswith(way + "/optimizer_"))
        assert len(got) == len(saved)
        harness.assert_trajectories_equal([[loaded[key] for key in sorted(
            got, key=lambda key: int(key.rsplit("_", 1)[1]))]], [saved], atol=0)
    assert list(loaded["{}/warnings".format(way)]) == [""]


@pytest.mark.parametrize("file", FILES)
def test_a_plain_file_restarts_lookahead_from_its_weights_with_one_log_line(file, tmp_path,
                                                                               caplog):
    steps = batches()
    plain = harness.mlp("sgd", harness.start_weights())
    for bx, by in steps[:2]:
        plain.train_on_batch(bx, by)
    path = save(plain, file, tmp_path)
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    for bx, by in steps[:FIRST]:                       # mid-cycle when the file is loaded
        model.train_on_batch(bx, by)
    with caplog.at_level(logging.INFO, logger="lookahead_inject"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    said = [r.getMessage() for r in caplog.records if r.name == "lookahead_inject"]
    assert len(said) == 1 and "no Lookahead state" in said[0], said
    assert lookahead_warnings(caught) == []
    assert la.step == 0
    trajectory = []
    for bx, by in steps[FIRST:]:
        model.train_on_batch(bx, by)
        trajectory.append(model.get_weights())
    # Lookahead from the loaded weights: slow copies taken at the next step.
    want = reference.mlp_trajectory(
        [np.asarray(w, np.float64) for w in plain.get_weights()],
        [(bx.astype(np.float64), by.astype(np.float64)) for bx, by in steps[FIRST:]],
        reference.OPTIMIZERS["sgd"](), K, ALPHA)
    harness.assert_trajectories_equal(trajectory, want)


def test_a_load_by_layer_name_restarts_lookahead_from_the_loaded_weights(tmp_path, caplog):
    # Part of a file into another model: the file's Lookahead state is another model's.
    written_with_lookahead("sgd", tmp_path)
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    for bx, by in batches()[:2]:
        model.train_on_batch(bx, by)
    with caplog.at_level(logging.INFO, logger="lookahead_inject"):
        model.load_weights(str(tmp_path / "w.h5"), by_name=True)
    said = [r.getMessage() for r in caplog.records if r.name == "lookahead_inject"]
    assert len(said) == 1 and la.step == 0, said


def test_a_model_saved_without_its_optimizer_holds_no_lookahead_state(tmp_path):
    import h5py
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=K, alpha=ALPHA)
    model.train_on_batch(*batches()[0])
    path = str(tmp_path / "m.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save(path, include_optimizer=False)
    assert lookahead_warnings(caught) == []
    with h5py.File(path, "r") as f:
        assert "lookahead_inject" not in f


def test_a_damaged_lookahead_dataset_fails_the_load_with_the_fix(tmp_path):
    import h5py
    written_with_lookahead("sgd", tmp_path)
    path = str(tmp_path / "w.h5")
    with h5py.File(path, "r+") as f:
        f["lookahead_inject"][-40] ^= 1             # a bit of the last slow weight
    model = harness.mlp("sgd")
    inject(model, k=K, alpha=ALPHA)
    with pytest.raises(StateFileError, match="load an undamaged copy of the file"):
        model.load_weights(path)


def test_after_remove_the_files_are_plain_again(tmp_path):
    import h5py
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    model.train_on_batch(*batches()[0])
    la.remove()
    assert not {"save", "save_weights", "load_weights"} & set(vars(model))
    for file in FILES:
        with h5py.File(save(model, file, tmp_path), "r") as f:
            assert "lookahead_inject" not in f


def keras_zip_skip_reason():
    """Keras 2.13+ write a ".keras" path as a zip; before, as HDF5 (which carries the state)."""
    if harness.STANDALONE or harness.tf_older_than(2, 13):
        return "{}: model.save('m.keras') writes HDF5, which carries the state".format(
            harness.ENVIRONMENT.describe())
    if harness.GRAPH:
        return "{}: Keras' own .keras (zip) saving fails in graph mode (it reads values " \
               "with numpy(), eager only)".format(
            harness.ENVIRONMENT.describe())
    return None


@pytest.mark.skipif(keras_zip_skip_reason() is not None, reason=str(keras_zip_skip_reason()))
def test_saving_a_keras_zip_warns_once_that_it_holds_no_lookahead_state(tmp_path):
    model = harness.mlp("sgd", harness.start_weights())
    inject(model, k=K, alpha=ALPHA)
    model.train_on_batch(*batches()[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save(str(tmp_path / "m.keras"))
    said = lookahead_warnings(caught)
    assert len(said) == 1 and "la.save(path)" in said[0], said


@pytest.mark.skipif(keras_zip_skip_reason() is not None, reason=str(keras_zip_skip_reason()))
def test_loading_a_keras_zip_restarts_lookahead_from_its_weights(tmp_path, caplog):
    model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    for bx, by in batches()[:2]:
        model.train_on_batch(bx, by)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoLookaheadStateWarning)
        model.save(str(tmp_path / "m.keras"))
    with caplog.at_level(logging.INFO, logger="lookahead_inject"):
        model.load_weights(str(tmp_path / "m.keras"))
    said = [r.getMessage() for r in caplog.records if r.name == "lookahead_inject"]
    assert len(said) == 1 and "no Lookahead state" in said[0] and la.step == 0, said
