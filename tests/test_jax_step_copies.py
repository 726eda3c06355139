"""Keras 3 / JAX: a step that does not sync does no work per weight. Counted, not timed:
the bytes XLA's copy instructions write in the train step that ``fit`` compiles
(benchmarks/jax_step_copies.py reads them from XLA's own dump)."""

import os
import sys

import pytest

import harness

pytestmark = pytest.mark.skipif(
    harness.KERAS_BACKEND != "jax",
    reason="an XLA dump of the jitted train step exists on Keras 3's JAX backend only")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import jax_step_copies  # noqa: E402

COUNTER_BYTES = 4


@pytest.fixture(scope="module")
def plain_bytes():
    return jax_step_copies.copied_bytes(0.9, None)


@pytest.mark.parametrize("optimizer_state", ["keep", "reset", "pullback"])
def test_the_compiled_step_copies_only_what_plain_trainings_step_copies(plain_bytes,
                                                                        optimizer_state):
    assert jax_step_copies.copied_bytes(0.9, optimizer_state) <= plain_bytes + COUNTER_BYTES
