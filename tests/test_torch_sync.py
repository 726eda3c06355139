"""Keras 3 on PyTorch syncs float32 state in place (``keras3_torch._sync_in_place``, with
``rule.torch_rule``) and other dtypes with ``rule.ops_rule``: the backend's in-place sync,
the weights' and then each optimizer_state's, must agree with the keras.ops rule bit for
bit (the rules themselves: tests/test_update_rule.py)."""

import os

import numpy as np
import pytest

ALPHAS = (0.0, 0.3, 0.5, 0.8, 1.0)


def keras_on_torch():
    if os.environ.get("KERAS_BACKEND") != "torch":
        pytest.skip("the in-place sync is Keras 3's PyTorch backend's (KERAS_BACKEND=torch)")
    import keras
    return keras


@pytest.mark.parametrize("optimizer_state", ("keep", "reset", "pullback"))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_in_place_sync_is_the_keras_ops_rule(alpha, optimizer_state):
    keras = keras_on_torch()
    from keras import ops
    from lookahead_inject.backends.native import keras3_torch
    from lookahead_inject.rule import ops_rule
    rng = np.random.RandomState(3)
    shapes = [(4, 3), (3,), (3, 1)]
    fast, slow, cached, buffers = ([rng.uniform(-1, 1, s).astype("float32") for s in shapes]
                                   for _ in range(4))
    if optimizer_state == "keep":
        buffers, cached = [], []
    elif optimizer_state == "reset":
        cached = []
    pulled = [ops.convert_to_numpy(p) for p in ops_rule.pull(
        [ops.convert_to_tensor(f) for f in fast], [ops.convert_to_tensor(s) for s in slow],
        alpha)]
    if optimizer_state == "reset":
        expected_buffers = [np.zeros_like(b) for b in buffers]
    elif optimizer_state == "pullback":
        expected_buffers = [ops.convert_to_numpy(b) for b in ops_rule.pullback(
            [ops.convert_to_tensor(b) for b in buffers],
            [ops.convert_to_tensor(c) for c in cached], alpha)]
    else:
        expected_buffers = []
    variables = [[keras.Variable(v) for v in group] for group in (fast, slow, cached, buffers)]
    keras3_torch._sync_in_place(alpha, optimizer_state, *variables)
    got_fast, got_slow, got_cached, got_buffers = (
        [ops.convert_to_numpy(v.value) for v in group] for group in variables)
    for got, expected in [(got_fast, pulled), (got_slow, pulled), (got_buffers, expected_buffers),
                          (got_cached, expected_buffers if optimizer_state == "pullback" else [])]:
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
