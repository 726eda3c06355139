"""Keras 3 on every backend: the Lookahead handle tells the truth in the middle of fit.

On JAX the training step is a pure function of its state: during fit the values
live in the trainer's arrays, and the variables are written only when something
asks (``model.jax_state_sync()``; Keras' ``Callback.model`` does). A callback that
holds only the handle ``la`` never asks through Keras, so ``la.step``,
``la.get_state()``, ``la.slow_weights()`` and ``la.sync()`` must get and put the
true values themselves, and training must go on from what ``la.sync()`` wrote.
Compared step by step with the numpy Lookahead (reference.py) to 1e-5.
"""

import numpy as np
import pytest

import keras3_support as support

BACKEND, SKIP = support.keras3_backend_or_skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

K, ALPHA = 3, 0.5
#: la.sync() from the callback after these steps: mid-cycle (2, 7), and the last
#: step of an epoch (6), where fit itself writes the state back to the variables.
SYNC_AFTER = (2, 6, 7)
#: compile(run_eagerly=...): JAX's jitted step or its Python one; torch's eager step.
RUNS = {"compiled": {}, "run_eagerly": {"run_eagerly": True}}


class OnlyTheHandle(object):
    """What a callback that holds ``la`` and never touches ``self.model`` sees."""

    def __init__(self, la, sync_after=()):
        import keras
        self.seen, handle = [], self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                step = la.step
                slow = la.get_state()["slow_weights"]
                with la.slow_weights() as model:
                    swapped_in = model.get_weights()
                if step in sync_after:
                    la.sync()
                # Read after the handle's own reads: those already asked for the state.
                handle.seen.append((step, slow, swapped_in, la.model.get_weights()))
        self.callback = Callback()


def fit(model, la, opt, sync_after=()):
    x, y = support.data()
    reader = OnlyTheHandle(la, sync_after)
    model.fit(x, y, batch_size=support.BATCH, epochs=support.EPOCHS, shuffle=False, verbose=0,
              callbacks=[reader.callback])
    return reader.seen, support.expected_with_slow(
        opt, K, ALPHA, support.epoch_batches(x, y), sync_after)


def injected(opt, run):
    from lookahead_inject import inject
    model = support.mlp(opt, support.start_weights(), **RUNS[run])
    return model, inject(model, k=K, alpha=ALPHA)


def assert_seen_matches(seen, want):
    assert [step for step, _, _, _ in seen] == list(range(1, len(want) + 1))
    for (step, slow, swapped_in, fast), (want_fast, want_slow) in zip(seen, want):
        support.assert_close(slow, want_slow, "step {}: get_state slow weights".format(step))
        support.assert_close(swapped_in, want_slow, "step {}: inside slow_weights()".format(step))
        support.assert_close(fast, want_fast, "step {}: fast weights".format(step))


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_step_and_state_read_from_a_callback_mid_fit_are_true(opt, run):
    model, la = injected(opt, run)
    seen, want = fit(model, la, opt)
    assert_seen_matches(seen, want)
    support.assert_close(model.get_weights(), want[-1][0], "after fit")
    assert la.step == support.STEPS


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_sync_from_a_callback_mid_fit_is_followed_by_training(opt, run):
    model, la = injected(opt, run)
    seen, want = fit(model, la, opt, SYNC_AFTER)
    assert_seen_matches(seen, want)
    support.assert_close(model.get_weights(), want[-1][0], "after fit")
    # The syncs count no step: the in-step syncs stay at 3, 6, 9, 12.
    assert la.step == support.STEPS
    # The reference has power: without the extra syncs the run ends elsewhere.
    plain = support.expected_with_slow(opt, K, ALPHA, support.epoch_batches(*support.data()))
    assert max(np.abs(a - b).max() for a, b in zip(plain[-1][0], want[-1][0])) > 1e-3


@pytest.mark.skipif(BACKEND != "keras3_torch", reason="jit_compile=True is torch.compile on "
                    "PyTorch only; JAX's default step is already jitted (tested above)")
def test_sync_from_a_callback_mid_fit_under_torch_compile():
    # Keras compiles the train step with torch.compile; the optimizer's apply with the
    # Lookahead sync runs eagerly inside it (torch.compiler.disable). One optimizer:
    # compiling is slow on a small CPU.
    from lookahead_inject import inject
    model = support.mlp("adam", support.start_weights(), jit_compile=True)
    la = inject(model, k=K, alpha=ALPHA)
    seen, want = fit(model, la, "adam", SYNC_AFTER)
    assert_seen_matches(seen, want)
    assert la.step == support.STEPS
