"""Keras 3 on every backend: the Lookahead state and Keras 3's own files.

- la.save / la.load and la.get_state / la.set_state resume exactly in a fresh process,
  next to model.save(".keras") / save_weights(".weights.h5") for the model and the
  optimizer's own state (numpy reference, 1e-5).
- Lookahead never costs the optimizer its own state in those files: Keras 3 skips
  all of an optimizer's saved variables (with only a warning) when their count
  differs from the optimizer's. A file written with Lookahead loads into a plain
  model, and a plain file into an injected model, with every optimizer variable
  (iterations, SGD momentum, Adam's moments) equal and no warning at all; the same
  after la.remove().
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import keras3_support as support
from common import WORKERS

BACKEND, SKIP = support.keras3_backend_or_skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

HERE = os.path.dirname(os.path.abspath(__file__))
K, ALPHA, STEPS_WRITTEN = 3, 0.5, 4
FILES = ("m.keras", "w.weights.h5")
#: A loss-scale optimizer saves its own section and its inner optimizer's.
OPTIMIZERS = ("momentum", "adam", "loss_scaled_adam")


@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("fmt", ["keras_and_state_file", "weights_and_state_file",
                                 "keras_and_get_state", "keras_alone"])
def test_resume_in_a_fresh_process_is_exact(fmt, opt, tmp_path):
    for phase in ("first", "second"):
        subprocess.run([sys.executable, os.path.join(WORKERS, "keras3_resume_worker.py"), fmt, opt,
                        phase, str(tmp_path)], cwd=HERE, check=True, timeout=300)
    batches = support.epoch_batches(*support.data(), epochs=3)[:9]
    want = support.expected_with_slow(opt, K, ALPHA, batches)
    with np.load(str(tmp_path / "final.npz")) as final:
        got = [final["arr_{}".format(i)] for i in range(8)]
        assert int(final["step"]) == 9
    support.assert_close(got[:4], want[-1][0], "weights after the resumed run")
    # Step 9 synced: the slow weights are the weights.
    support.assert_close(got[4:], want[-1][0], "slow weights after the resumed run")


# -- the optimizer's own state in Keras 3's files -----------------------------------

def values(variables):
    from keras import ops
    return [np.array(ops.convert_to_numpy(v.value)) for v in variables]


def own_optimizer_variables(model, opt):
    """The optimizer's variables but Lookahead's (which the JAX / PyTorch backends
    add to it as lookahead_*): as many as a plain model's optimizer has."""
    own = [v for v in model.optimizer.variables if "lookahead_" not in v.path]
    plain = support.mlp(opt)
    plain.optimizer.build(plain.trainable_variables)
    assert len(own) == len(plain.optimizer.variables), [v.path for v in model.optimizer.variables]
    return own


def writer(opt, lookahead, tmp_path):
    """A model trained STEPS_WRITTEN steps (with Lookahead, without, or with it
    removed afterwards) that wrote both files; returns its optimizer's own values."""
    from lookahead_inject import inject
    model = support.mlp(opt, support.start_weights())
    option = "pullback" if lookahead == "pullback" else "keep"
    la = inject(model, k=K, alpha=ALPHA, optimizer_state=option) if lookahead != "plain" else None
    for x, y in support.epoch_batches(*support.data(), epochs=2)[:STEPS_WRITTEN]:
        model.train_on_batch(x, y)
    if lookahead == "removed":
        la.remove()
    model.save(str(tmp_path / "m.keras"))
    model.save_weights(str(tmp_path / "w.weights.h5"))
    return values(own_optimizer_variables(model, opt)), model.get_weights()


def no_warning(load):
    # Keras 3 reports an optimizer whose saved variables it skips only by a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load()


def reader(opt, lookahead, file, tmp_path):
    """The model that loads ``file``: plain (``.keras`` through keras.saving.load_model),
    injected, or injected and removed again (both with a built optimizer, which
    Keras 3 needs to load the optimizer's variables)."""
    import keras
    from lookahead_inject import inject
    if lookahead == "plain" and file == "m.keras":
        return no_warning(lambda: keras.saving.load_model(str(tmp_path / file)))
    model = support.mlp(opt)
    if lookahead != "plain":
        la = inject(model, k=K, alpha=ALPHA)
    model.optimizer.build(model.trainable_variables)
    if lookahead == "removed":
        la.remove()
    no_warning(lambda: model.load_weights(str(tmp_path / file)))
    return model


def assert_same_optimizer_state(model, opt, want_optimizer, want_weights):
    from keras import ops
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == STEPS_WRITTEN
    got = values(own_optimizer_variables(model, opt))
    support.assert_close(got, want_optimizer, "optimizer variables", atol=0)
    support.assert_close(model.get_weights(), want_weights, "weights", atol=0)


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("written_with", ["lookahead", "removed"])
def test_a_file_written_with_lookahead_loads_into_a_plain_model(written_with, opt, file, tmp_path):
    want_optimizer, want_weights = writer(opt, written_with, tmp_path)
    assert_same_optimizer_state(reader(opt, "plain", file, tmp_path), opt, want_optimizer,
                                want_weights)


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("read_with", ["lookahead", "removed"])
def test_a_plain_file_loads_into_an_injected_model(read_with, opt, file, tmp_path):
    want_optimizer, want_weights = writer(opt, "plain", tmp_path)
    assert_same_optimizer_state(reader(opt, read_with, file, tmp_path), opt, want_optimizer,
                                want_weights)


@pytest.mark.parametrize("file", FILES)
def test_a_file_written_with_lookahead_loads_into_an_injected_model(file, tmp_path):
    want_optimizer, want_weights = writer("adam", "lookahead", tmp_path)
    assert_same_optimizer_state(reader("adam", "lookahead", file, tmp_path), "adam",
                                want_optimizer, want_weights)


@pytest.mark.parametrize("file", FILES)
def test_a_file_written_with_pullback_momentum_copies_loads_into_a_plain_model(file, tmp_path):
    # optimizer_state="pullback" adds a momentum copy per weight to the Lookahead variables.
    want_optimizer, want_weights = writer("momentum", "pullback", tmp_path)
    assert_same_optimizer_state(reader("momentum", "plain", file, tmp_path), "momentum",
                                want_optimizer, want_weights)
