"""The Lookahead rule (``lookahead_inject.rule``) in every vocabulary this env runs, pinned
to ``numpy_rule`` on the same float32 values: each of pull, reset and pullback, for a few
alpha. A vocabulary this env cannot run is skipped, saying why: TensorFlow's runs in the
TF envs (ref variables in graph mode only), keras.ops' with Keras 3 (eagerly), torch's
with torch installed; an env with TF and Keras 3 (TF >= 2.16) runs two."""

import doctest
import os
import subprocess
import sys

import numpy as np
import pytest

import lookahead_inject.rule
from lookahead_inject.rule import numpy_rule

ALPHAS = (0.0, 0.3, 0.5, 1.0)
OPERATIONS = ("pull", "reset", "pullback")
VOCABULARIES = ("tf", "tf_ref", "ops", "torch")
SHAPES = [(4, 3), (3,), (3, 1)]

#: Per operation, how many lists of values it updates: (fast, slow), (slots,),
#: (buffers, cached).
GROUPS = {"pull": 2, "reset": 1, "pullback": 2}


def values(operation, seed=1):
    rng = np.random.RandomState(seed)
    return [[rng.uniform(-1, 1, s).astype("float32") for s in SHAPES]
            for _ in range(GROUPS[operation])]


def call(rule, operation, groups, alpha):
    """``rule``'s ``operation`` on the lists ``groups`` (alpha where it takes one)."""
    if operation == "reset":
        return rule.reset(*groups)
    return getattr(rule, operation)(*groups, alpha)


def functional(rule, operation, groups, alpha, convert, to_numpy):
    """The lists after the operation, for a rule that returns new values (the pulled
    values are both new lists: fast and slow, buffers and cache)."""
    new = [to_numpy(v) for v in call(rule, operation,
                                      [[convert(a) for a in g] for g in groups], alpha)]
    return [new] * len(groups)


def by_numpy(operation, groups, alpha):
    return functional(numpy_rule, operation, groups, alpha, np.copy, np.asarray)


# -- each vocabulary: the lists after the operation, or a skip saying why -------------

def tensorflow():
    # Imported, not looked up: TF 1.14's module has no __spec__ once imported.
    try:
        import tensorflow as tf
    except ImportError:
        pytest.skip("TensorFlow is not installed in this env ({}): the TF rule runs in the "
                    "TF envs".format(env_label()))
    return tf


def by_tf(operation, groups, alpha, ref=False):
    tf = tensorflow()
    from lookahead_inject.rule import tf_rule
    if tf.executing_eagerly():
        if ref:
            pytest.skip("TF {} eager: ref variables exist in graph mode only (standalone "
                        "Keras 2.2 makes them)".format(tf.__version__))
        variables = [[tf.Variable(a) for a in g] for g in groups]
        call(tf_rule, operation, variables, alpha)
        return [[v.numpy() for v in g] for g in variables]
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        variables = [[tf.compat.v1.Variable(a, use_resource=not ref) for a in g]
                     for g in groups]
        updates = call(tf_rule, operation, variables, alpha)
        session.run(tf.compat.v1.variables_initializer([v for g in variables for v in g]))
        session.run(updates)
        return session.run(variables)


def keras_ops():
    try:
        import keras
    except ImportError:
        pytest.skip("no keras package in this env ({}): keras.ops exists from Keras "
                    "3".format(env_label()))
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


def by_ops(operation, groups, alpha):
    ops = keras_ops()
    from lookahead_inject.rule import ops_rule
    return functional(ops_rule, operation, groups, alpha, ops.convert_to_tensor,
                      ops.convert_to_numpy)


def by_torch(operation, groups, alpha):
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed in this env ({}): the in-place rule runs in the "
                    "Keras 3 on PyTorch env".format(env_label()))
    from lookahead_inject.rule import torch_rule
    tensors = [[torch.tensor(a) for a in g] for g in groups]
    call(torch_rule, operation, tensors, alpha)
    return [[t.numpy().copy() for t in g] for g in tensors]


RUN = {"tf": by_tf, "tf_ref": lambda *args: by_tf(*args, ref=True), "ops": by_ops,
       "torch": by_torch}


def env_label():
    import harness
    return harness.ENVIRONMENT.describe()


# -- the tests -------------------------------------------------------------------

@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("vocabulary", VOCABULARIES)
def test_the_rule_is_the_numpy_rule(vocabulary, operation, alpha):
    groups = values(operation)
    got = RUN[vocabulary](operation, [[np.copy(a) for a in g] for g in groups], alpha)
    expected = by_numpy(operation, groups, alpha)
    assert len(got) == len(expected)
    for got_group, expected_group in zip(got, expected):
        assert len(got_group) == len(expected_group)
        for g, e in zip(got_group, expected_group):
            assert np.asarray(g).dtype == np.float32
            np.testing.assert_allclose(g, e, atol=1e-6, rtol=0)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_torch_rule_is_the_keras_ops_rule_bit_for_bit(operation, alpha):
    # Keras 3 on PyTorch syncs float32 state in place and other dtypes with keras.ops:
    # one training run, one result.
    if os.environ.get("KERAS_BACKEND") != "torch":
        pytest.skip("keras.ops on torch tensors needs Keras 3's PyTorch backend "
                    "(KERAS_BACKEND=torch; here: {})".format(env_label()))
    groups = values(operation, seed=3)
    got = by_torch(operation, [[np.copy(a) for a in g] for g in groups], alpha)
    for got_group, expected_group in zip(got, by_ops(operation, groups, alpha)):
        for g, e in zip(got_group, expected_group):
            np.testing.assert_array_equal(g, e)


def test_the_package_docstring_example_runs():
    result = doctest.testmod(lookahead_inject.rule)
    assert result.attempted and not result.failed


def test_the_rule_without_tensorflow_imports_no_tensorflow():
    # The Keras 3 JAX / PyTorch backends import ops_rule / torch_rule; their envs have no
    # TF, so a TF import there would fail at once. Elsewhere ops_rule is Keras 3 on TF.
    modules = ["lookahead_inject.rule", "lookahead_inject.rule.numpy_rule"]
    if os.environ.get("KERAS_BACKEND") in ("jax", "torch"):
        modules.append("lookahead_inject.rule.ops_rule")
    if os.environ.get("KERAS_BACKEND") == "torch":
        modules.append("lookahead_inject.rule.torch_rule")
    code = ("import importlib, sys\n"
            "for name in {!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))\n"
            ).format(modules)
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
