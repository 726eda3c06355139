"""The state file: a save never destroys the last good file, and every damaged or
foreign file is refused with a StateFileError naming it and what is wrong with it.

Most tests use lookahead_inject.state directly (no model needed); the last ones go
through la.save / la.load on an injected model."""

import errno
import hashlib
import io
import json
import os
import pickle
import random
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import harness
from common import WORKERS
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
from workers import state_file_worker
from lookahead_inject import InvalidArgumentError, LookaheadError, StateFileError, state

HERE = os.path.dirname(os.path.abspath(__file__))

LIKE = [("dense/kernel:0", (4, 8), "float32"), ("dense/bias:0", (8,), "float32"),
        ("scale:0", (), "float64")]


def bfloat16():
    """numpy's bfloat16: TensorFlow's, or (Keras 3 on JAX / PyTorch) ml_dtypes', which
    Keras 3 requires."""
    if tf is not None:
        return np.dtype(tf.bfloat16.as_numpy_dtype)
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)


def small_state(seed=0, step=4):
    rng = np.random.RandomState(seed)
    return state.make(step, [rng.standard_normal(shape).astype(dtype) for _, shape, dtype in LIKE],
                      3, 0.5)


def assert_same_state(got, want):
    assert (got["step"], got["k"], got["alpha"]) == (want["step"], want["k"], want["alpha"])
    assert len(got["slow_weights"]) == len(want["slow_weights"])
    for g, w in zip(got["slow_weights"], want["slow_weights"]):
        assert g.shape == w.shape and g.dtype == w.dtype.newbyteorder("=")
        np.testing.assert_array_equal(g, w)


def is_same_state(got, want):
    try:
        assert_same_state(got, want)
    except AssertionError:
        return False
    return True


def strays(folder, name="state"):
    return [f for f in os.listdir(str(folder)) if f != name]


# -- a file that loads is exactly what was saved -------------------------------

ROUND_TRIP_DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool",
                     "complex64", "bfloat16", ">f4"]


@pytest.mark.parametrize("dtype", ROUND_TRIP_DTYPES)
def test_load_returns_exactly_what_save_wrote(dtype, tmp_path):
    dtype = bfloat16() if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.RandomState(0)
    shapes = [(3, 5), (), (0, 4), (2, 3, 2)]
    slow = [(rng.standard_normal(shape) * 10).astype(dtype) for shape in shapes]
    slow[0] = slow[0].T                                   # not C-contiguous
    like = [("w{}".format(i), a.shape, a.dtype) for i, a in enumerate(slow)]
    saved = state.make(7, slow, 2, 0.25)
    state.save(tmp_path / "state", saved, like)           # a path object works too
    assert_same_state(state.load(str(tmp_path / "state")), saved)


@pytest.mark.parametrize("option", ["keep", "reset", "pullback"])
def test_load_returns_the_optimizer_state_and_momentum_copies_save_wrote(option, tmp_path):
    rng = np.random.RandomState(1)
    slow = [rng.standard_normal(shape).astype(dtype) for _, shape, dtype in LIKE]
    momentum = [rng.standard_normal(shape).astype(dtype) for _, shape, dtype in LIKE] \
        if option == "pullback" else []
    saved = state.make(5, slow, 3, 0.5, option, momentum)
    state.save(str(tmp_path / "state"), saved, LIKE)
    got = state.load(str(tmp_path / "state"))
    assert_same_state(got, saved)
    assert got["optimizer_state"] == option and len(got["momentum_cache"]) == len(momentum)
    for g, w in zip(got["momentum_cache"], momentum):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


# -- a save never destroys the last good file ----------------------------------

@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()], ids=["disk_full", "ctrl_c"])
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary_file(
        failure, tmp_path, monkeypatch):
    path = str(tmp_path / "state")
    before = small_state(seed=0, step=4)
    state.save(path, before, LIKE)

    def fail(fd):
        raise failure
    # A full disk or Ctrl-C surfaces at the latest when the data is forced to disk.
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)):
        state.save(path, small_state(seed=1, step=5), LIKE)
    monkeypatch.undo()
    assert_same_state(state.load(path), before)
    assert strays(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="Windows has no SIGKILL")
def test_a_save_killed_with_sigkill_leaves_the_previous_or_the_new_state(tmp_path):
    path = str(tmp_path / "state")
    both = state_file_worker.states()
    rng = random.Random(1)
    for _ in range(8):
        worker = subprocess.Popen([sys.executable, os.path.join(WORKERS, "state_file_worker.py"),
                                   path], cwd=HERE, stdout=subprocess.PIPE)
        try:
            target, started = rng.randint(2, 5), 0
            while started < target:
                line = worker.stdout.readline()
                assert line, "the worker died before save {}".format(target)
                started = int(line.split()[1])
            # "saving N" came out just before save N began (and save N-1 is complete):
            # kill it at a random-ish moment of save N (write, fsync, rename).
            time.sleep(rng.uniform(0, 0.03))
            os.kill(worker.pid, signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait()
            worker.stdout.close()
        got = state.load(path)
        assert is_same_state(got, both[0]) or is_same_state(got, both[1])
    # Each kill inside a write leaves its temporary file; without one, no kill hit a
    # save in progress and this test showed nothing.
    assert strays(tmp_path), "no kill landed during a save"
    assert all(name.startswith(".state.") and name.endswith(".tmp") for name in strays(tmp_path))


def test_stray_temporary_files_change_nothing(tmp_path):
    # What kill -9 leaves behind, complete or not: load reads only the path, save replaces it.
    path = str(tmp_path / "state")
    first, second = small_state(seed=0, step=4), small_state(seed=1, step=5)
    state.save(path, first, LIKE)
    with open(path, "rb") as source:
        complete = source.read()
    leftovers = {".state.0123456789ab.tmp": complete[:40], ".state.ba9876543210.tmp": complete}
    for name, content in leftovers.items():
        (tmp_path / name).write_bytes(content)
    assert_same_state(state.load(path), first)
    state.save(path, second, LIKE)
    assert_same_state(state.load(path), second)
    assert sorted(strays(tmp_path)) == sorted(leftovers)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits and symlinks")
def test_saving_over_a_file_keeps_its_permissions_and_its_symlink(tmp_path):
    # The atomic save writes a new file: it must still look like an overwrite.
    target, link = tmp_path / "real_state", tmp_path / "state"
    state.save(str(target), small_state(seed=0), LIKE)
    os.chmod(str(target), 0o640)
    os.symlink(str(target), str(link))
    state.save(str(link), small_state(seed=1), LIKE)
    assert os.path.islink(str(link))
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o640
    assert_same_state(state.load(str(target)), small_state(seed=1))


# -- every damaged or foreign file gets a clear error --------------------------

def forge(header, data=b""):
    """A file in the documented layout with a valid checksum, around any header."""
    header = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    body = state.MAGIC + struct.pack("<Q", len(header)) + header + data
    return body + hashlib.sha256(body).digest()


def good_header(**changes):
    header = {"format": state.FORMAT, "step": 4, "k": 3, "alpha": 0.5,
              "weights": [{"name": "w", "shape": [2, 3], "dtype": "float32"}]}
    header.update(changes)
    return {key: value for key, value in header.items() if value is not None}


GOOD_DATA = np.arange(6, dtype="<f4").tobytes()


def weight(**changes):
    spec = {"name": "w", "shape": [2, 3], "dtype": "float32"}
    spec.update(changes)
    return [{key: value for key, value in spec.items() if value is not None}]


class RunsCode(object):
    """Unpickling this creates a file: proof that a loader executed the payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def flip(data, at):
    data = bytearray(data)
    data[at] ^= 0x10
    return bytes(data)


def npz(**arrays):
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def plain_zip():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


def npy():
    out = io.BytesIO()
    np.save(out, np.zeros(3))
    return out.getvalue()


# case -> (content from (the good file's bytes, marker path), what the error must say)
DAMAGED = {
    "empty": (lambda good, m: b"", "empty"),
    "signature_only": (lambda good, m: good[:6], "truncated"),
    "cut_before_header": (lambda good, m: good[:40], "truncated"),
    "cut_in_header": (lambda good, m: good[:100], "truncated or damaged: its header length"),
    "cut_in_weights": (lambda good, m: good[:-60], r"truncated \(\d+ of \d+ bytes\)"),
    "last_byte_missing": (lambda good, m: good[:-1], "truncated"),
    "trailing_bytes": (lambda good, m: good + b"\0", "damaged"),
    "flip_in_signature": (lambda good, m: flip(good, 3), "damaged"),
    "flip_in_header_length": (lambda good, m: flip(good, 15), "damaged"),
    "flip_in_header": (lambda good, m: flip(good, 40), "damaged"),
    "flip_in_weights": (lambda good, m: flip(good, len(good) - 50), "damaged"),
    "flip_in_checksum": (lambda good, m: flip(good, len(good) - 1), "damaged"),
    "npy": (lambda good, m: npy(), r"numpy \.npy"),
    "npz": (lambda good, m: npz(slow_0=np.zeros(3)), "zip archive"),
    "npz_with_pickled_object": (lambda good, m: npz(slow_0=np.array([RunsCode(m)], dtype=object)),
                                "zip archive"),
    "plain_zip": (lambda good, m: plain_zip(), "zip archive"),
    "pickle": (lambda good, m: pickle.dumps(RunsCode(m), protocol=2), "pickle"),
    "hdf5": (lambda good, m: b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5"),
    "text": (lambda good, m: b"step=4\nk=3\n", "text file starting with 'step=4'"),
    "binary": (lambda good, m: bytes(range(7, 100)), "binary file"),
    "header_not_json": (lambda good, m: forge(b"{step: 4"), "not JSON"),
    "header_not_an_object": (lambda good, m: forge([4, 3, 0.5]), "not an object"),
    "header_lacks_k": (lambda good, m: forge(good_header(k=None), GOOD_DATA), "lacks k"),
    "header_lacks_step_and_weights": (
        lambda good, m: forge(good_header(step=None, weights=None), GOOD_DATA),
        "lacks step, weights"),
    "other_format": (lambda good, m: forge(good_header(format="lookahead_inject.state/9"),
                                           GOOD_DATA), "format 'lookahead_inject.state/9'"),
    "negative_step": (lambda good, m: forge(good_header(step=-1), GOOD_DATA), "step is -1"),
    "step_as_text": (lambda good, m: forge(good_header(step="4"), GOOD_DATA), "step is '4'"),
    "step_as_float": (lambda good, m: forge(good_header(step=4.5), GOOD_DATA), "step is 4.5"),
    "k_zero": (lambda good, m: forge(good_header(k=0), GOOD_DATA), "k is 0"),
    "alpha_above_1": (lambda good, m: forge(good_header(alpha=1.5), GOOD_DATA), "alpha is 1.5"),
    "alpha_nan": (lambda good, m: forge(good_header(alpha=float("nan")), GOOD_DATA),
                  "alpha is nan"),
    "weights_not_a_list": (lambda good, m: forge(good_header(weights={"w": 1}), GOOD_DATA),
                           "weights is"),
    "weight_lacks_dtype": (lambda good, m: forge(good_header(weights=weight(dtype=None)),
                                                 GOOD_DATA), r"weights\[0\] is"),
    "negative_dimension": (lambda good, m: forge(good_header(weights=weight(shape=[-2, 3])),
                                                 GOOD_DATA), r"weights\[0\]\.shape"),
    "object_dtype": (lambda good, m: forge(good_header(weights=weight(dtype="object")),
                                           GOOD_DATA), r"weights\[0\]\.dtype is 'object'"),
    "unknown_dtype": (lambda good, m: forge(good_header(weights=weight(dtype="float33")),
                                            GOOD_DATA), r"weights\[0\]\.dtype is 'float33'"),
    "fewer_weight_bytes": (lambda good, m: forge(good_header(), GOOD_DATA[:-4]),
                           "describes 24 bytes of slow weights, the file holds 20"),
    "impossible_shape": (lambda good, m: forge(good_header(weights=weight(shape=[0, 2 ** 70]))),
                         "impossible"),
    "unknown_optimizer_state": (lambda good, m: forge(good_header(optimizer_state="none"),
                                                      GOOD_DATA), "optimizer_state is 'none'"),
    "momentum_copies_without_pullback": (
        lambda good, m: forge(good_header(optimizer_state="reset", momentum_cache=1),
                              GOOD_DATA * 2), "momentum_cache is 1"),
    "pullback_without_its_momentum_bytes": (
        lambda good, m: forge(good_header(optimizer_state="pullback", momentum_cache=1),
                              GOOD_DATA), "describes 48 bytes of slow weights, the file holds 24"),
}


def assert_clear(error, path):
    """A StateFileError that names the file, with no library traceback chained to it."""
    assert isinstance(error, StateFileError)
    assert isinstance(error, InvalidArgumentError) and isinstance(error, LookaheadError)
    assert error.path == path and repr(path) in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_or_foreign_file_gets_a_clear_error(case, tmp_path):
    good, path, marker = str(tmp_path / "good"), str(tmp_path / "state"), str(tmp_path / "ran")
    state.save(good, small_state(), LIKE)
    with open(good, "rb") as source:
        content, why = DAMAGED[case][0](source.read(), marker), DAMAGED[case][1]
    with open(path, "wb") as out:
        out.write(content)
    with pytest.raises(StateFileError, match=why) as caught:
        state.load(path)
    assert_clear(caught.value, path)
    assert not os.path.exists(marker), "loading ran code from the file"


@pytest.mark.parametrize("case", ["missing", "a_directory"])
def test_an_unreadable_path_gets_a_clear_error(case, tmp_path):
    path = str(tmp_path / "state")
    if case == "a_directory":
        os.mkdir(path)
    with pytest.raises(StateFileError, match="cannot read it") as caught:
        state.load(path)
    assert_clear(caught.value, path)


def test_every_single_bit_flip_is_detected(tmp_path):
    good, path = str(tmp_path / "good"), str(tmp_path / "state")
    state.save(good, small_state(), LIKE)
    with open(good, "rb") as source:
        content = source.read()
    for at in range(len(content)):
        damaged = bytearray(content)
        damaged[at] ^= 1 << (at % 8)
        with open(path, "wb") as out:
            out.write(damaged)
        with pytest.raises(StateFileError, match="damaged"):
            state.load(path)


# -- through la.save / la.load on an injected model ----------------------------

def test_la_load_of_a_damaged_file_names_it_and_changes_nothing(tmp_path):
    path = str(tmp_path / "lookahead_state")
    _, la = harness.trained(steps=4)
    la.save(path)
    with open(path, "rb") as source:
        content = source.read()
    with open(path, "wb") as out:
        out.write(flip(content, len(content) // 2))
    _, other = harness.trained(steps=2)
    before = other.get_state()
    with pytest.raises(StateFileError, match="damaged") as caught:
        other.load(path)
    assert_clear(caught.value, path)
    assert_same_state(other.get_state(), before)


def test_la_save_interrupted_keeps_the_file_of_the_previous_save(tmp_path, monkeypatch):
    path = str(tmp_path / "lookahead_state")
    model, la = harness.trained(steps=4)
    la.save(path)
    saved = la.get_state()
    x, y = harness.data()
    model.train_on_batch(x[:16], y[:16])

    def ctrl_c(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        la.save(path)
    monkeypatch.undo()
    _, other = harness.trained(steps=1)
    other.load(path)
    assert other.step == 4
    assert_same_state(other.get_state(), saved)
    assert strays(tmp_path, "lookahead_state") == []
