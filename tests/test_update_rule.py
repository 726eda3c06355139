"""The Lookahead rule is written once per ops vocabulary: TensorFlow's (``_sync``, every TF
backend) and ``keras.ops``' (``_ops_rule``, Keras 3 on JAX and PyTorch). Both are pinned
here to the one numpy rule of tests/reference.py, on the same values; an env with TF and
Keras 3 (TF >= 2.16) runs both."""

import sys

import numpy as np
import pytest

import reference

ALPHAS = (0.0, 0.3, 0.5, 1.0)


def values(seed):
    rng = np.random.RandomState(seed)
    shapes = [(4, 3), (3,), (3, 1)]
    fast = [rng.uniform(-1, 1, s).astype("float32") for s in shapes]
    slow = [rng.uniform(-1, 1, s).astype("float32") for s in shapes]
    return fast, slow


def numpy_rule(fast, slow, alpha):
    """(new fast, new slow) by reference.LookaheadSim's sync."""
    sim = reference.LookaheadSim(k=1, alpha=alpha)
    sim.slow, sim.trained = dict(enumerate(np.copy(s) for s in slow)), tuple(range(len(slow)))
    new_fast = sim.force_sync(fast)
    return new_fast, [sim.slow[i] for i in range(len(slow))]


def numpy_pullback(buffers, cached, alpha):
    return [alpha * b + (1 - alpha) * c for b, c in zip(buffers, cached)]


def tensorflow():
    # Imported, not looked up: TF 1.14's module has no __spec__ once imported.
    try:
        import tensorflow as tf
    except ImportError:
        pytest.skip("TensorFlow is not installed here (Keras 3 on JAX / PyTorch): "
                    "the TF rule runs in the TF envs")
    return tf


def keras_ops():
    try:
        import keras
    except ImportError:
        pytest.skip("no keras package: keras.ops exists from Keras 3")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip("keras {}: keras.ops exists from Keras 3".format(keras.__version__))
    tf = sys.modules.get("tensorflow")
    if tf is not None and not tf.executing_eagerly():
        # tf-keras envs install Keras 3 beside tf-keras; their graph-mode pass disables eager
        # execution, where keras.ops gives symbolic tensors.
        pytest.skip("keras {} has no graph mode (TF {} with eager execution disabled): the "
                    "keras.ops rule runs in the eager pass".format(keras.__version__,
                                                                   tf.__version__))
    from keras import ops
    return ops


def as_tensors(ops, arrays):
    return [ops.convert_to_tensor(a) for a in arrays]


def run_tf(tf, build):
    """Run the ops ``build()`` makes, now, in eager or graph mode; the variables' values."""
    if tf.executing_eagerly():
        variables = build()
        return [v.numpy() for v in variables]
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        variables, op = build()
        session.run(tf.compat.v1.variables_initializer(variables))
        session.run(op)
        return session.run(variables)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_tensorflow_rule_is_the_numpy_rule(alpha):
    tf = tensorflow()
    from lookahead_inject.backends._sync import pull_together
    fast, slow = values(1)

    def build():
        fast_v = [tf.Variable(f) for f in fast]
        slow_v = [tf.Variable(s) for s in slow]
        op = pull_together(list(zip(fast_v, slow_v)), alpha)
        return fast_v + slow_v if tf.executing_eagerly() else (fast_v + slow_v, op)
    got = run_tf(tf, build)
    expected_fast, expected_slow = numpy_rule(fast, slow, alpha)
    for g, e in zip(got, expected_fast + expected_slow):
        np.testing.assert_allclose(g, e, atol=1e-6)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_keras_ops_rule_is_the_numpy_rule(alpha):
    ops = keras_ops()
    from lookahead_inject.backends import _ops_rule
    fast, slow = values(1)
    pulled = _ops_rule.pull_together(as_tensors(ops, fast), as_tensors(ops, slow), alpha)
    expected_fast, expected_slow = numpy_rule(fast, slow, alpha)
    for g, e_fast, e_slow in zip(pulled, expected_fast, expected_slow):
        np.testing.assert_allclose(ops.convert_to_numpy(g), e_fast, atol=1e-6)
        np.testing.assert_allclose(ops.convert_to_numpy(g), e_slow, atol=1e-6)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_keras_ops_pullback_is_the_numpy_pullback(alpha):
    ops = keras_ops()
    from lookahead_inject.backends import _ops_rule
    buffers, cached = values(2)
    got = _ops_rule.pullback(as_tensors(ops, buffers), as_tensors(ops, cached), alpha)
    for g, e in zip(got, numpy_pullback(buffers, cached, alpha)):
        np.testing.assert_allclose(ops.convert_to_numpy(g), e, atol=1e-6)
