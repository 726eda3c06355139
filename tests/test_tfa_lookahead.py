"""``inject`` trains as tensorflow-addons' ``tfa.optimizers.Lookahead``, the Lookahead of TF 2
Keras until tfa's end (its last release, 0.23, installs with TF 2.13 - 2.15): the same
weights at every step, to 1e-6, with tfa's arguments (``sync_period``, ``slow_step_size``).
This is what docs/lookahead-optimizer.md's "Coming from tfa.optimizers.Lookahead" promises
where tfa still runs.
"""

import pytest

import harness

SYNC_PERIOD_SLOW_STEP = [(6, 0.5), (3, 0.8), (1, 1.0)]


def _tfa_or_skip():
    version = harness.ENVIRONMENT.tf_version
    if version is None or not (2, 13) <= version.release[:2] <= (2, 15) or harness.STANDALONE:
        pytest.skip("tensorflow-addons 0.23 (its last release) installs with TF 2.13 - 2.15 "
                    "only; here: {}".format(harness.ENVIRONMENT.describe()))
    import tensorflow_addons
    return tensorflow_addons


@pytest.mark.parametrize("sync_period, slow_step_size", SYNC_PERIOD_SLOW_STEP)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_inject_trains_as_tfa_lookahead_at_every_step(opt, sync_period, slow_step_size, execution):
    tfa = _tfa_or_skip()
    from lookahead_inject import inject
    x, y = harness.data()
    # tfa's Lookahead wraps the legacy optimizers of TF 2.11+ (OptimizerV2, per variable).
    theirs = harness.mlp(tfa.optimizers.Lookahead(harness.optimizer(opt, legacy=True),
                                                  sync_period=sync_period,
                                                  slow_step_size=slow_step_size),
                         harness.start_weights(), execution)
    ours = harness.mlp(harness.optimizer(opt, legacy=True), harness.start_weights(), execution)
    inject(ours, k=sync_period, alpha=slow_step_size)
    want = harness.train(theirs, "fit", x, y)
    got = harness.train(ours, "fit", x, y)
    harness.assert_trajectories_equal(got, want, atol=1e-6)
