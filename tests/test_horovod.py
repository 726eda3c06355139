"""Lookahead under Horovod: two ranks on localhost (horovodrun --gloo) train one Lookahead.

Each test launches ``horovodrun --gloo -np 2 -H localhost:2`` on tests/horovod_worker.py
(in this process's TF mode) and compares the ranks' final weights, slow weights and
steps with each other and with single-process Lookahead on the global batch
(tests/reference.py). Only the py311-tf215-horovod tox env builds Horovod.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import harness
from common import WORKERS, expected

HERE = os.path.dirname(os.path.abspath(__file__))
# The Horovod section of the docs, with the example a user copies (README links it).
MULTIPLE_DEVICES = os.path.join(os.path.dirname(HERE), "docs", "multiple-devices.md")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
N_WEIGHTS = 4

try:
    import horovod.tensorflow.keras  # noqa: F401
    HOROVOD = None
except Exception as exc:           # not installed, or built against another TF
    HOROVOD = "{}: {}".format(type(exc).__name__, exc)

pytestmark = pytest.mark.skipif(
    HOROVOD is not None or not os.path.exists(HOROVODRUN),
    reason=harness.without_tensorflow("no horovod.tensorflow.keras") or
    "horovod 0.28.1 is not installed here ({}); only the py311-tf215-horovod tox env "
    "(TF 2.15) builds it from source".format(HOROVOD))


def horovodrun(args, cwd, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable] + args
    out = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-4000:]
    return out.stdout


def run_worker(tmp_path, opt, api, start, *extra):
    horovodrun([os.path.join(WORKERS, "horovod_worker.py"), harness.ENVIRONMENT.mode, opt, api,
                start, str(tmp_path)] + list(extra), cwd=HERE)
    ranks = []
    for rank in (0, 1):
        with np.load(str(tmp_path / "rank{}.npz".format(rank))) as saved:
            arrays = [saved["arr_{}".format(i)] for i in range(2 * N_WEIGHTS)]
            ranks.append((arrays[:N_WEIGHTS], arrays[N_WEIGHTS:], int(saved["step"])))
    return ranks


def assert_ranks_identical(ranks):
    (fast0, slow0, step0), (fast1, slow1, step1) = ranks
    assert step0 == step1 == harness.STEPS
    for name, a, b in [("fast", x, y) for x, y in zip(fast0, fast1)] + \
            [("slow", x, y) for x, y in zip(slow0, slow1)]:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=name + " weights differ between ranks")


def assert_single_process_lookahead(ranks, opt):
    # The allreduce averages the two shards' mean gradients: the global batch's gradient.
    x, y = harness.data()
    want = expected(opt, 3, 0.5, x, y)
    for fast, slow, _ in ranks:
        harness.assert_trajectories_equal([fast], [want[-1]])
        # Step 12 is a sync (k=3): the slow weights are the fast ones.
        harness.assert_trajectories_equal([slow], [want[-1]])


@pytest.mark.parametrize("api", ["fit", "train_on_batch"])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_ranks_from_different_starts_end_identical(tmp_path, opt, api):
    # Before the fix each rank took its slow weights from its own start: the ranks
    # ended 0.67 apart.
    assert_ranks_identical(run_worker(tmp_path, opt, api, "per_rank"))


@pytest.mark.parametrize("api", ["fit", "train_on_batch"])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_ranks_alike_equal_single_process_lookahead_on_the_global_batch(tmp_path, opt, api):
    ranks = run_worker(tmp_path, opt, api, "alike")
    assert_ranks_identical(ranks)
    assert_single_process_lookahead(ranks, opt)


def test_resume_from_rank0_save_continues_the_same_lookahead(tmp_path):
    # Plain SGD has no optimizer state, so the .h5 weights and la.save are all of it.
    ranks = run_worker(tmp_path, "sgd", "fit", "per_rank", "resume")
    assert_ranks_identical(ranks)


def test_resume_from_rank0_save_equals_uninterrupted_lookahead(tmp_path):
    ranks = run_worker(tmp_path, "sgd", "fit", "alike", "resume")
    assert_ranks_identical(ranks)
    assert_single_process_lookahead(ranks, "sgd")


def test_backward_passes_per_step_is_refused_with_the_fix(tmp_path):
    out = horovodrun([os.path.join(WORKERS, "horovod_worker.py"), harness.ENVIRONMENT.mode, "sgd",
                      "fit", "alike", str(tmp_path), "passes2"], cwd=HERE)
    assert out.count("REFUSED: ModelNotReadyError") == 2, out[-3000:]
    assert "backward_passes_per_step=2" in out and "backward_passes_per_step=1" in out


@pytest.mark.skipif(harness.GRAPH and harness.ENVIRONMENT.tf_version.major >= 2,
                    reason="TF 2.15 graph mode: the docs show TF 2's default eager mode "
                           "(graph mode needs legacy optimizers; covered above)")
def test_readme_horovod_block_runs(tmp_path):
    with open(MULTIPLE_DEVICES) as handle:
        blocks = re.findall(r"```python horovod\n(.*?)```", handle.read(), re.S)
    assert len(blocks) == 1
    check = """
np.save("rank%d.npy" % hvd.rank(), np.concatenate([w.ravel() for w in model.get_weights()]))
print("RANK", hvd.rank(), "STEP", la.step)
"""
    script = tmp_path / "readme_horovod.py"
    script.write_text(blocks[0] + check)
    out = horovodrun([str(script)], cwd=str(tmp_path))
    assert out.count("STEP 8") == 2, out[-3000:]
    # Each rank starts from its own random weights and trains on its own data.
    np.testing.assert_allclose(np.load(str(tmp_path / "rank0.npy")),
                               np.load(str(tmp_path / "rank1.npy")), rtol=0, atol=1e-6)
    assert (tmp_path / "lookahead_state").exists()


@pytest.mark.parametrize("option", ["reset", "pullback"])
def test_an_optimizer_state_other_than_keep_is_refused_with_the_fix(option):
    # In this process (one rank): the refusal comes at inject, before any step.
    import horovod.tensorflow.keras as hvd
    from lookahead_inject import OptimizerStateError, inject
    hvd.init()
    model = harness.mlp(hvd.DistributedOptimizer(harness.optimizer("momentum")),
                        harness.start_weights())
    with pytest.raises(OptimizerStateError, match="Horovod.*optimizer_state='keep'"):
        inject(model, k=3, alpha=0.5, optimizer_state=option)
    inject(model, k=3, alpha=0.5)           # nothing was changed: a plain inject still works
