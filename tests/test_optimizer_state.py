"""optimizer_state: what a sync does to the optimizer's own state ("keep", "reset", "pullback").

Each option against its numpy reference (reference.LookaheadSim), step by step to 1e-5;
refusals at inject; the choice and the momentum copies in the state, across processes.
"""

import numpy as np
import pytest

import harness
from harness import tf  # None where Keras 3 runs on JAX / PyTorch
import reference
from lookahead_inject import (InvalidArgumentError, Lookahead, ModelNotReadyError,
                              OptimizerStateError, inject)
from lookahead_inject.rule import numpy_rule
from common import expected


@pytest.fixture(autouse=True)
def tf_keras_only(request):
    if not request.function.__name__.startswith("test_standalone"):
        harness.skip_standalone("optimizers offer no per-weight slot API: optimizer_state "
                                "'reset' / 'pullback' are refused there (tested below)")


@pytest.mark.parametrize("option", ["reset", "pullback"])
def test_standalone_keras_refuses_reset_and_pullback_with_the_fix(option):
    if not harness.STANDALONE:
        pytest.skip("standalone Keras 2.2 / 2.3 only (LOOKAHEAD_TEST_KERAS=standalone)")
    model = harness.mlp("momentum", harness.start_weights())
    with pytest.raises(OptimizerStateError, match="standalone Keras.*optimizer_state='keep'"):
        inject(model, optimizer_state=option)
    inject(model)           # nothing was changed: a plain inject still works

# k not dividing the 3 steps of an epoch, k dividing it, alpha=0, and k=1 (a sync every step).
K_ALPHA = [(5, 0.5), (3, 0.5), (2, 0.0), (1, 0.8)]
CASES = [("reset", opt) for opt in sorted(reference.OPTIMIZERS)] + [("pullback", "momentum")]


def run(option, opt, k, alpha, execution=None, api="fit"):
    x, y = harness.data()
    model = harness.mlp(opt, harness.start_weights(), execution)
    inject(model, k=k, alpha=alpha, optimizer_state=option)
    return harness.train(model, api, x, y)


@pytest.mark.parametrize("option,opt", CASES)
@pytest.mark.parametrize("k,alpha", K_ALPHA)
def test_every_step_matches_numpy_reference(option, opt, k, alpha, execution):
    harness.assert_trajectories_equal(run(option, opt, k, alpha, execution),
                                      expected(opt, k, alpha, *harness.data(),
                                               optimizer_state=option))


@pytest.mark.parametrize("option,opt", CASES)
def test_train_on_batch_matches_numpy_reference(option, opt):
    harness.assert_trajectories_equal(run(option, opt, 3, 0.5, api="train_on_batch"),
                                      expected(opt, 3, 0.5, *harness.data(),
                                               optimizer_state=option))


@pytest.mark.parametrize("option,opt", [("reset", "momentum"), ("reset", "adam"),
                                        ("pullback", "momentum")])
def test_the_option_changes_the_trajectory(option, opt):
    # Guards the comparisons above against an option that silently does nothing.
    x, y = harness.data()
    keep = expected(opt, 3, 0.5, x, y)
    got = run(option, opt, 3, 0.5)
    assert not np.allclose(got[-1][0], keep[-1][0], atol=1e-4)


def test_the_authors_reference_bug_is_not_reproduced():
    # Their code keeps the live buffer as the cache: from the second sync on that is
    # buf <- alpha (2 - alpha) buf. With a copy the trajectory differs from it.
    x, y = harness.data()
    got = run("pullback", "momentum", 2, 0.5)
    batches = harness.epoch_batches(x.astype(np.float64), y.astype(np.float64))
    params, sgd = [np.asarray(p, np.float64) for p in harness.start_weights()], reference.SGD(0.05, 0.9)
    slow, cache_is_buffer = [np.copy(p) for p in params], False
    for step, (bx, by) in enumerate(batches, 1):
        params = sgd.step(params, reference.mlp_grads(params, bx, by))
        if step % 2 == 0:
            slow = numpy_rule.pull(params, slow, 0.5)
            params = [np.copy(s) for s in slow]
            factor = 0.5 * (2 - 0.5) if cache_is_buffer else 0.5
            sgd.velocity = [factor * v for v in sgd.velocity]
            cache_is_buffer = True
    assert not np.allclose(got[-1][0], params[0], atol=1e-4)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_pullback_is_refused_without_sgd_momentum(opt):
    model = harness.mlp(opt)
    with pytest.raises(ModelNotReadyError, match="momentum > 0"):
        inject(model, optimizer_state="pullback")
    inject(model)           # nothing was changed: a plain inject still works


def test_pullback_refusal_says_when_sgds_momentum_cannot_be_read():
    model = harness.mlp("momentum")

    def get_config():
        raise RuntimeError("a get_config that fails")

    model.optimizer.get_config = get_config
    with pytest.raises(ModelNotReadyError, match="momentum could not be read"):
        inject(model, optimizer_state="pullback")


def test_reset_is_refused_for_an_optimizer_whose_state_does_not_start_at_zero():
    module = harness.keras.optimizers
    if harness.GRAPH and hasattr(module, "legacy"):
        module = module.legacy
    model = harness.mlp(module.Adagrad(learning_rate=0.1))
    with pytest.raises(ModelNotReadyError, match="not Adagrad's: its accumulators start at "
                       "initial_accumulator_value.*optimizer_state='keep'"):
        inject(model, optimizer_state="reset")


def test_reset_is_refused_for_adafactor_whose_state_is_factored():
    adafactor = getattr(harness.keras.optimizers, "Adafactor", None)
    if adafactor is None or harness.GRAPH:
        pytest.skip("{}: no Adafactor to train with (Keras 2.11+ and Keras 3 have one; graph "
                    "mode trains with legacy optimizers only)".format(
                        harness.ENVIRONMENT.describe()))
    model = harness.mlp(adafactor(learning_rate=0.1))
    with pytest.raises(ModelNotReadyError, match="not Adafactor's: its state is factored.*row and "
                       "a column average.*optimizer_state='keep'"):
        inject(model, optimizer_state="reset")
    inject(model)           # nothing was changed: a plain inject still works


@pytest.mark.parametrize("bad", ["none", "Reset", None, 1])
def test_an_unknown_option_is_refused_with_the_choices(bad):
    with pytest.raises(InvalidArgumentError, match="'keep'.*'reset'.*'pullback'"):
        Lookahead(k=3, alpha=0.5, optimizer_state=bad)


def test_the_blog_form_takes_the_option_too():
    model = harness.mlp("momentum", harness.start_weights())
    la = Lookahead(3, 0.5, optimizer_state="pullback").inject(model)
    assert la.optimizer_state == "pullback"
    x, y = harness.data()
    harness.assert_trajectories_equal(
        harness.train(model, "fit", x, y),
        expected("momentum", 3, 0.5, x, y, optimizer_state="pullback"))


@pytest.mark.parametrize("option", ["keep", "reset", "pullback"])
def test_get_state_records_the_option(option):
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=3, alpha=0.5, optimizer_state=option)
    x, y = harness.data()
    for bx, by in harness.epoch_batches(x, y)[:4]:
        model.train_on_batch(bx, by)
    got = la.get_state()
    assert got["optimizer_state"] == option
    assert len(got["momentum_cache"]) == (4 if option == "pullback" else 0)


@pytest.mark.parametrize("saved,loading", [("keep", "reset"), ("pullback", "keep"),
                                           ("reset", "pullback")])
def test_load_refuses_a_file_written_with_another_option(saved, loading, tmp_path):
    la = inject(harness.mlp("momentum"), k=3, alpha=0.5, optimizer_state=saved)
    la.save(str(tmp_path / "state"))
    other = inject(harness.mlp("momentum"), k=3, alpha=0.5, optimizer_state=loading)
    with pytest.raises(InvalidArgumentError, match="optimizer_state='{}'".format(saved)):
        other.load(str(tmp_path / "state"))


def test_set_state_continues_pullback_exactly():
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=3, alpha=0.5, optimizer_state="pullback")
    for bx, by in batches[:4]:
        model.train_on_batch(bx, by)
    # A twin with the same weights and optimizer slots but the cache only from the state.
    twin = harness.mlp("momentum", model.get_weights())
    twin_la = inject(twin, k=3, alpha=0.5, optimizer_state="pullback")
    twin.train_on_batch(*batches[0])        # builds its optimizer's slots
    harness.set_values(twin.trainable_weights, harness.get_values(model.trainable_weights))
    harness.set_values(_slots(twin), harness.get_values(_slots(model)))
    twin_la.set_state(la.get_state())
    for bx, by in batches[4:9]:
        model.train_on_batch(bx, by)
        twin.train_on_batch(bx, by)
    harness.assert_trajectories_equal([twin.get_weights()], [model.get_weights()], atol=1e-6)


def _slots(model, trained=None):
    if trained is None:
        trained = model.trainable_variables if harness.KERAS_3 else model.trainable_weights
    if harness.KERAS_3:
        # Keras 3 (every backend) names a weight's slots after its path:
        # "sequential/dense/kernel" -> "sequential_dense_kernel_momentum".
        prefixes = [w.path.replace("/", "_") + "_" for w in trained]
        return [v for prefix in prefixes for v in optimizer_own_variables(model.optimizer)
                if v.name.startswith(prefix)]
    from lookahead_inject.backends.common import optimizer_slots
    return [s for slots in optimizer_slots.slots_of(model.optimizer, trained) for s in slots]


def optimizer_own_variables(optimizer):
    """The optimizer's variables without Lookahead's: on Keras 3 with JAX / PyTorch the
    slow copies and the step counter live among the optimizer's variables (so that
    JAX's stateless step carries them), named lookahead_*."""
    variables = optimizer.variables
    if callable(variables) and not isinstance(variables, list):     # Keras 2 OptimizerV2
        variables = variables()
    if not harness.KERAS3_WITHOUT_TF:
        return list(variables)
    return [v for v in variables if "lookahead" not in v.name]


def resume_formats():
    # Formats that hold the optimizer's momentum too (a Keras 2 .h5 file holds weights
    # only; Keras 3's .weights.h5 holds the built optimizer's variables as well).
    if harness.KERAS3_WITHOUT_TF:
        return ["keras3_weights_and_state_file"]
    return ["checkpoint", "keras3_weights_and_state_file"] if harness.KERAS_3 else (
        ["tf_weights"] if harness.GRAPH else ["tf_weights", "checkpoint"])


def resume(fmt, option, tmp_path):
    harness.resume_in_fresh_processes(fmt, "momentum", tmp_path, optimizer_state=option)


@pytest.mark.parametrize("fmt", resume_formats())
@pytest.mark.parametrize("option", ["reset", "pullback"])
def test_resume_in_a_fresh_process_is_exact(fmt, option, tmp_path):
    resume(fmt, option, tmp_path)
    got, step = harness.resumed_weights(tmp_path)
    assert step == 9
    want = expected("momentum", 3, 0.5, *harness.data(), steps=9, optimizer_state=option)[-1]
    harness.assert_trajectories_equal([got], [want], atol=1e-6)


def test_the_state_file_carries_the_momentum_copies_to_a_fresh_process(tmp_path):
    resume("h5_and_state_file", "pullback", tmp_path)
    with np.load(str(tmp_path / "cache_saved.npz")) as saved, \
            np.load(str(tmp_path / "cache_loaded.npz")) as loaded:
        assert len(saved.files) == 4
        assert any(np.abs(saved[name]).max() > 0 for name in saved.files)   # after a sync
        for name in saved.files:
            np.testing.assert_array_equal(loaded[name], saved[name])


RESET_OPTIMIZERS = {
    "SGD": dict(learning_rate=0.05, momentum=0.9),
    "Adam": dict(learning_rate=0.01, amsgrad=True),
    "RMSprop": dict(learning_rate=0.01, momentum=0.5, centered=True),
    "Nadam": dict(learning_rate=0.01),
    "Adamax": dict(learning_rate=0.01),
    "Adadelta": dict(learning_rate=1.0),
}


@pytest.mark.parametrize("name", sorted(RESET_OPTIMIZERS))
def test_reset_zeroes_every_per_weight_slot_the_optimizer_has(name):
    # Independent of how the library finds the slots: after a sync (k=1: every step),
    # every non-scalar variable of the optimizer (its per-weight state) is zero, and the
    # scalars (iterations, learning rate, Nadam's momentum product) are not all reset.
    module = harness.keras.optimizers
    if harness.GRAPH and hasattr(module, "legacy"):
        module = module.legacy
    optimizer = getattr(module, name)(**RESET_OPTIMIZERS[name])
    model = harness.mlp(optimizer, harness.start_weights())
    inject(model, k=1, alpha=0.5, optimizer_state="reset")
    x, y = harness.data()
    for bx, by in harness.epoch_batches(x, y)[:2]:
        model.train_on_batch(bx, by)
    values = harness.get_values(optimizer_own_variables(optimizer))
    slots = [v for v in values if np.ndim(v) > 0]
    assert slots, "no per-weight state found in {}".format(name)
    for value in slots:
        np.testing.assert_array_equal(value, np.zeros_like(value))
    assert 2 in [int(v) for v in values if np.ndim(v) == 0 and float(v).is_integer()]


@pytest.mark.skipif(harness.GRAPH, reason="graph mode (TF 1.x, TF 2.x v1 engine): Lookahead under "
                                          "tf.distribute is refused there")
@harness.needs_tensorflow("no tf.distribute")
@pytest.mark.parametrize("option,opt", [("reset", "adam"), ("pullback", "momentum")])
def test_mirrored_two_replicas_match_numpy_reference(option, opt):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = harness.mlp(opt, harness.start_weights())
    la = inject(model, k=3, alpha=0.5, optimizer_state=option)
    x, y = harness.data()
    harness.assert_trajectories_equal(harness.train(model, "fit", x, y),
                                      expected(opt, 3, 0.5, x, y, optimizer_state=option))
    variables = la._attachment.variables
    copies = [variables.momentum_for(w) for w in variables.trained] if option == "pullback" else []
    for variable in copies:
        first, second = [np.array(v.numpy()) for v in strategy.experimental_local_results(variable)]
        np.testing.assert_array_equal(first, second)


def run_demo(*argv):
    from lookahead_inject import __main__ as cli
    pytest.importorskip("sklearn", reason="scikit-learn is installed only in the TF 2.15, "
                                          "TF 2.21 Keras 3 and Keras 3 JAX / PyTorch tox envs "
                                          "(the demo extra)")
    lines = []
    code = cli.demo(cli.parser().parse_args(["demo"] + list(argv)), echo=lines.append)
    return code, "\n".join(lines)


def test_demo_runs_with_an_optimizer_state():
    code, out = run_demo("--epochs", "1", "--seeds", "1", "--lrs", "0.1", "--momentum", "0.9",
                         "--optimizer-state", "reset")
    assert code == 0
    assert "optimizer_state='reset'" in out and "momentum 0.9" in out
    assert [l for l in out.splitlines() if l.strip().startswith("0.1 |")]


def test_demo_refuses_pullback_without_momentum_and_says_the_fix():
    code, out = run_demo("--epochs", "1", "--seeds", "1", "--lrs", "0.1",
                         "--optimizer-state", "pullback")
    assert code == 1 and "--momentum 0.9" in out


def test_compile_with_an_optimizer_that_cannot_pull_back_is_refused():
    # Eager backends refuse at compile (the hook moves to the new optimizer there);
    # graph backends when the train function is rebuilt, at the next step.
    model = harness.mlp("momentum", harness.start_weights())
    inject(model, k=3, alpha=0.5, optimizer_state="pullback")
    x, y = harness.data()
    with pytest.raises(OptimizerStateError, match="pullback.*Adam"):
        model.compile(optimizer=harness.optimizer("adam"), loss="mse")
        model.train_on_batch(x[:16], y[:16])


@pytest.mark.parametrize("option", ["reset", "pullback"])
def test_a_frozen_weights_optimizer_state_is_never_touched(option, execution):
    # The same optimizer is compiled again after freezing the first layer, so it keeps
    # that layer's momentum; a sync (k=2) treats only the trained weights' state.
    if harness.KERAS_BACKEND == "jax":
        pytest.skip("Keras {} (jax backend): an optimizer built on 4 weights cannot step 2 of "
                    "them after compile() (stateless_apply raises ValueError, without "
                    "Lookahead too)".format(harness.ENVIRONMENT.keras_version))
    x, y = harness.data()
    model = harness.mlp("momentum", harness.start_weights(), execution)
    inject(model, k=2, alpha=0.5, optimizer_state=option)
    model.train_on_batch(x[:16], y[:16])                    # step 1: momentum of every weight
    frozen = model.trainable_variables[:2] if harness.KERAS_3 else model.trainable_weights[:2]
    before = harness.get_values(_slots(model, frozen))
    assert all(np.abs(value).max() > 0 for value in before)
    model.layers[0].trainable = False
    model.compile(optimizer=model.optimizer, loss="mse", **harness.compile_kwargs(execution))
    for bx, by in harness.epoch_batches(x, y)[1:4]:          # steps 2-4: syncs at 2 and 4
        model.train_on_batch(bx, by)
    harness.assert_trajectories_equal([harness.get_values(_slots(model, frozen))], [before], atol=0)
    head = model.trainable_variables if harness.KERAS_3 else model.trainable_weights
    if option == "reset":        # guards against a sync that treated no weight at all
        assert all(np.abs(value).max() == 0 for value in harness.get_values(_slots(model, head)))
