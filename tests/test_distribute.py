"""Lookahead under tf.distribute: MirroredStrategy over two logical CPUs equals one device."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
import reference
from lookahead_inject import ModelNotReadyError, detect, inject
from common import WORKERS, expected

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = harness.needs_tensorflow("no tf.distribute")

eager_only = pytest.mark.skipif(
    harness.GRAPH, reason="graph mode (TF 1.x, TF 2.x v1 engine): Lookahead under "
                          "tf.distribute is refused there, see test_graph_mode_refuses_a_strategy")


def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def replica_values(variable, strategy):
    return [np.array(v.numpy()) for v in strategy.experimental_local_results(variable)]


def model_variables(model):
    # A Keras 3 variable wraps the (mirrored) tf.Variable in .value.
    return [w.value for w in model.trainable_weights] if harness.KERAS_3 else model.trainable_weights


@eager_only
@pytest.mark.parametrize("api", ["fit", "train_on_batch"])
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_mirrored_two_replicas_equal_single_device(opt, api):
    if api == "train_on_batch" and harness.ENVIRONMENT.tf_version.release[:2] in ((2, 0), (2, 1)):
        pytest.skip("TF 2.0 / 2.1: train_on_batch under MirroredStrategy fails without "
                    "Lookahead too (2.0: TypeError: Variable is unhashable; 2.1: ValueError: "
                    "optimizer slot variable created under the default strategy's scope)")
    strategy = mirrored()
    with strategy.scope():
        model = harness.mlp(opt, harness.start_weights())
    la = inject(model, k=3, alpha=0.5)                # outside the scope: the model's strategy counts
    x, y = harness.data()
    harness.assert_trajectories_equal(harness.train(model, api, x, y), expected(opt, 3, 0.5, x, y))
    variables = la._attachment.variables
    for variable in list(model_variables(model)) + variables.slow + [variables.step]:
        copies = replica_values(variable, strategy)
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=variable.name)
    assert la.step == harness.STEPS


@eager_only
def test_state_of_a_mirrored_model_round_trips(tmp_path):
    strategy = mirrored()
    with strategy.scope():
        model = harness.mlp("sgd", harness.start_weights())
    la = inject(model, k=3, alpha=0.5)
    x, y = harness.data()
    harness.train(model, "fit", x[:32], y[:32], epochs=2)                 # 4 steps, mid-cycle
    la.save(str(tmp_path / "state"))
    saved = la.get_state()
    la.set_state(dict(saved, step=0))
    la.load(str(tmp_path / "state"))
    assert la.step == 4
    for copy in replica_values(la._attachment.variables.step, strategy):
        assert int(copy) == 4


@eager_only
@pytest.mark.parametrize("api", ["fit", "train_on_batch"])
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_mirrored_lookahead_optimizer_equals_single_device(opt, api):
    if harness.STANDALONE or harness.ENVIRONMENT.tf_version.major < 2:
        pytest.skip("{}: LookaheadOptimizer is Keras 3's and Keras 2's on TF 2".format(
            harness.ENVIRONMENT.describe()))
    if api == "train_on_batch" and harness.ENVIRONMENT.tf_version.release[:2] in ((2, 0), (2, 1)):
        pytest.skip("TF 2.0 / 2.1: train_on_batch under MirroredStrategy fails without "
                    "Lookahead too (test_mirrored_two_replicas_equal_single_device)")
    from lookahead_inject import LookaheadOptimizer
    strategy = mirrored()
    with strategy.scope():
        inner = harness.optimizer(opt, legacy=not harness.KERAS_3)
        model = harness.mlp(LookaheadOptimizer(inner, k=3, alpha=0.5), harness.start_weights())
    x, y = harness.data()
    harness.assert_trajectories_equal(harness.train(model, api, x, y), expected(opt, 3, 0.5, x, y))
    # Its state (Keras 3: the inner optimizer's variables; Keras 2: its slots and weight):
    # one value on both replicas.
    state = ([v.value for v in model.optimizer.variables] if harness.KERAS_3
             else list(model.optimizer.weights))
    assert len(state) > 4
    for variable in list(model_variables(model)) + state:
        copies = replica_values(variable, strategy)
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=variable.name)


@pytest.mark.skipif(not harness.GRAPH, reason="eager mode supports strategies (tests above)")
def test_graph_mode_refuses_a_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = harness.mlp("sgd", harness.start_weights())
        with pytest.raises(ModelNotReadyError, match="tf.distribute.*graph mode"):
            inject(model)
    assert detect()["distribute"] == "not supported"


def free_loopback_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@eager_only
def test_two_workers_on_loopback_equal_single_device(tmp_path):
    if harness.KERAS_3:
        pytest.skip("Keras 3 (3.15 on TF 2.21): fit under MultiWorkerMirroredStrategy fails "
                    "without Lookahead too (ValueError: Attempt to convert a value (PerReplica))")
    ports = ",".join(free_loopback_ports(2))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    workers = [subprocess.Popen([sys.executable, os.path.join(WORKERS, "multiworker_worker.py"),
                                 str(index), ports, str(tmp_path)], cwd=HERE, env=env)
               for index in (0, 1)]
    deadline = time.time() + 240
    try:
        for worker in workers:
            worker.wait(timeout=max(1, deadline - time.time()))
    finally:
        for worker in workers:                 # never leave a worker behind
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
    assert [w.returncode for w in workers] == [0, 0]
    results = []
    for index in (0, 1):
        with np.load(str(tmp_path / "worker{}.npz".format(index))) as saved:
            results.append(([saved["arr_{}".format(i)] for i in range(8)], int(saved["step"])))
    (chief, chief_step), (other, other_step) = results
    assert chief_step == other_step == harness.STEPS
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    x, y = harness.data()
    harness.assert_trajectories_equal([chief[:4]], [expected("adam", 3, 0.5, x, y)[-1]])
    model = harness.mlp("adam", chief[:4])               # the chief's saved state loads here
    la = inject(model, k=3, alpha=0.5)
    la.load(str(tmp_path / "chief_state"))
    assert la.step == harness.STEPS
    harness.assert_trajectories_equal([la.get_state()["slow_weights"]], [chief[4:]], atol=0)
