"""Lookahead under tf.distribute: MirroredStrategy over two logical CPUs equals one device."""

import numpy as np
import pytest
import tensorflow as tf

import harness
import reference
from lookahead_inject import ModelNotReadyError, detect, inject
from test_trajectory import expected

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
    if api == "train_on_batch" and harness.ENVIRONMENT.tf_version.release[:2] == (2, 0):
        pytest.skip("TF 2.0: train_on_batch under MirroredStrategy fails without Lookahead too "
                    "(TypeError: Variable is unhashable)")
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


@pytest.mark.skipif(not harness.GRAPH, reason="eager mode supports strategies (tests above)")
def test_graph_mode_refuses_a_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = harness.mlp("sgd", harness.start_weights())
        with pytest.raises(ModelNotReadyError, match="tf.distribute.*graph mode"):
            inject(model)
    assert detect()["distribute"] == "not supported"
