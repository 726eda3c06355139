"""Lookahead works: weights after every step equal the numpy simulation to 1e-5."""

import numpy as np
import pytest

import harness
import reference
from common import expected
from lookahead_inject import Lookahead, inject

# (k, alpha): plain training; k not dividing the 3 steps of an epoch; k dividing it;
# alpha=0 (back to the start every k steps); a k and alpha of no special kind.
K_ALPHA = [(1, 1.0), (5, 0.5), (3, 0.5), (2, 0.0), (4, 0.8)]


def assert_matches_numpy_lookahead(k, alpha, opt, api, execution):
    x, y = harness.data()
    model = harness.mlp(opt, harness.start_weights(), execution)
    inject(model, k=k, alpha=alpha)
    harness.assert_trajectories_equal(harness.train(model, api, x, y), expected(opt, k, alpha, x, y))


@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
@pytest.mark.parametrize("k,alpha", K_ALPHA)
def test_every_step_matches_numpy_lookahead(k, alpha, opt, execution):
    assert_matches_numpy_lookahead(k, alpha, opt, "fit", execution)


# The training API only decides how steps reach the backend, not the arithmetic:
# each API is checked with every optimizer at one (k, alpha), pairwise with the above.
@pytest.mark.parametrize("api", harness.APIS)
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_every_api_matches_numpy_lookahead(api, opt, execution):
    assert_matches_numpy_lookahead(5, 0.5, opt, api, execution)


def test_reference_tells_lookahead_from_plain_training():
    # The harness has power: at 1e-5 it separates Lookahead from plain SGD.
    x, y = harness.data()
    lookahead, plain = expected("sgd", 5, 0.5, x, y), expected("sgd", 1, 1.0, x, y)
    assert max(np.abs(a - b).max() for a, b in zip(lookahead[-1], plain[-1])) > 1e-2


def test_step_count_carries_across_apis_and_calls(execution):
    x, y = harness.data()
    model = harness.mlp("momentum", harness.start_weights(), execution)
    la = inject(model, k=5, alpha=0.5)
    weights = harness.train(model, "train_on_batch", x[:32], y[:32], epochs=1)  # steps 1-2
    weights += harness.train(model, "fit", x[16:], y[16:], epochs=1)          # steps 3-4
    weights += harness.train(model, "fit_generator", x, y, epochs=1)           # steps 5-7
    weights += harness.train(model, "train_on_batch", x, y, epochs=1)          # steps 8-10
    batches = harness.epoch_batches(x, y, 1)
    order = batches[:2] + batches[1:] + batches + batches
    want = reference.mlp_trajectory(harness.start_weights(), order,
                                    reference.OPTIMIZERS["momentum"](), 5, 0.5)
    harness.assert_trajectories_equal(weights, want)
    assert la.step == 10


def test_blog_form_trains_the_same():
    x, y = harness.data()
    model = harness.mlp("adam", harness.start_weights())
    Lookahead(k=3, alpha=0.5).inject(model)
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y), expected("adam", 3, 0.5, x, y))


@pytest.mark.parametrize("api", ("train_on_batch", "fit"))
def test_loss_and_metrics_are_reported_as_without_lookahead(api, execution):
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights(), execution, metrics=["mae"])
    inject(model, k=2, alpha=0.5)
    reference_model = harness.mlp("sgd", harness.start_weights(), metrics=["mae"])
    steps = [lambda m, b=b: m.train_on_batch(*b) for b in harness.epoch_batches(x, y, 2)]
    _, want = harness.keras_lookahead_reference(reference_model, steps, k=2, alpha=0.5)
    if api == "train_on_batch":
        got = [model.train_on_batch(*b) for b in harness.epoch_batches(x, y, 2)]
    else:
        # fit reports epoch means of the per-step values.
        history = model.fit(x, y, batch_size=harness.BATCH, epochs=2, shuffle=False, verbose=0)
        metric = [key for key in history.history if key != "loss"]   # "mae" or its long name
        assert len(metric) == 1, history.history
        got = list(zip(history.history["loss"], history.history[metric[0]]))
        want = [np.mean(want[i:i + 3], axis=0) for i in (0, 3)]
    np.testing.assert_allclose(np.array(got, np.float64), np.array(want, np.float64), atol=1e-5)
