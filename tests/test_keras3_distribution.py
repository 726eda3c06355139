"""Keras 3 on JAX: Lookahead under keras.distribution.DataParallel over two CPU devices
trains what one device trains, and what the numpy Lookahead computes (1e-5), with its
slow copies laid out like their weights (keras3_jax.DISTRIBUTE).

The runs are subprocesses (keras3_distribution_worker.py): the two devices come from
XLA_FLAGS, which jax reads once, at import.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import keras3_support as support
from common import WORKERS

BACKEND, SKIP = support.keras3_backend_or_skip_reason()
if SKIP is None and BACKEND != "keras3_jax":
    SKIP = ("Keras 3 on {}: Lookahead under keras.distribution is the JAX backend's (Keras "
            "3.15 has no keras.distribution for PyTorch; TensorFlow's tf.distribute "
            "strategies are tested in test_distribute.py)".format(BACKEND))
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

HERE = os.path.dirname(os.path.abspath(__file__))
K, ALPHA, SYNC_AFTER = 3, 0.5, (4,)


def run(mode, folder, form="inject"):
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                          " --xla_force_host_platform_device_count=2").strip())
    subprocess.run([sys.executable, os.path.join(WORKERS, "keras3_distribution_worker.py"), mode,
                    str(folder), form], cwd=HERE, env=env, check=True, timeout=600)
    name = mode + ("" if form == "inject" else "-optimizer") + ".npz"
    with np.load(str(folder / name)) as saved:
        return {key: saved[key] for key in saved.files}


def flat(weights):
    return np.concatenate([np.ravel(w) for w in weights])


def test_data_parallel_over_two_devices_trains_as_one_device_and_numpy(tmp_path):
    parallel, single = run("data_parallel", tmp_path), run("single", tmp_path)
    assert int(parallel["devices"]) == 2
    # The four weights and the array that packs their slow copies are on both devices.
    assert int(parallel["slow_variables"]) == 1 and parallel["everywhere"].all()
    assert not single["everywhere"].any()      # the one-device run is one: the check has power
    steps = list(range(1, support.STEPS + 1))
    assert list(parallel["steps"]) == list(single["steps"]) == steps
    np.testing.assert_allclose(parallel["fast"], single["fast"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(parallel["slow"], single["slow"], rtol=0, atol=1e-5)
    want = support.expected_with_slow("adam", K, ALPHA, support.epoch_batches(*support.data()),
                                 SYNC_AFTER)
    np.testing.assert_allclose(parallel["fast"], [flat(fast) for fast, _ in want],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(parallel["slow"], [flat(slow) for _, slow in want],
                               rtol=0, atol=1e-5)


def test_lookahead_optimizer_under_data_parallel_trains_as_one_device_and_numpy(tmp_path):
    # LookaheadOptimizer's state is the inner optimizer's variables: laid out the same way.
    parallel = run("data_parallel", tmp_path, "optimizer")
    single = run("single", tmp_path, "optimizer")
    assert int(parallel["devices"]) == 2
    assert int(parallel["slow_variables"]) == 1 and parallel["everywhere"].all()
    np.testing.assert_allclose(parallel["fast"], single["fast"], rtol=0, atol=1e-5)
    want = support.expected_with_slow("adam", K, ALPHA, support.epoch_batches(*support.data()))
    np.testing.assert_allclose(parallel["fast"], [flat(fast) for fast, _ in want],
                               rtol=0, atol=1e-5)
