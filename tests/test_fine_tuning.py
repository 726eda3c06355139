"""Fine-tuning as the Keras transfer-learning guide does it: freeze, compile, train;
unfreeze, compile again with a low learning rate, train on. Lookahead never writes a
weight that is not trained, a weight that joins the training takes its slow copy at
the first step that trains it, and the others keep theirs and the step count."""

import numpy as np
import pytest

import harness
import reference
from lookahead_inject import inject

BASE, HEAD, ALL = (0, 1), (2, 3), (0, 1, 2, 3)      # get_weights() indices of the two Dense layers

# (trainable weights, numpy optimizer, learning rate) per phase; each phase compiles anew.
# freeze base -> unfreeze all (the guide); train all -> freeze the head mid-cycle ->
# unfreeze it again (it takes a new slow copy).
SCHEDULES = {
    "unfreeze_base": [(HEAD, 0.1), (ALL, 0.02)],
    "freeze_head_mid_cycle_then_unfreeze": [(ALL, 0.1), (BASE, 0.05), (ALL, 0.05)],
}
STEPS_PER_PHASE = (4, 5, 4)     # k=3: syncs fall inside phases and across their borders


def numpy_optimizer(opt, lr):
    return {"sgd": lambda: reference.SGD(lr), "momentum": lambda: reference.SGD(lr, momentum=0.9),
            "adam": lambda: reference.Adam(lr)}[opt]()


def keras_optimizer(opt, lr):
    optimizer = harness.optimizer(opt)
    return type(optimizer).from_config(dict(optimizer.get_config(), learning_rate=lr))


def set_trainable(model, trained):
    model.layers[0].trainable = BASE[0] in trained
    model.layers[1].trainable = HEAD[0] in trained


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("opt", sorted(reference.OPTIMIZERS))
def test_changing_the_trainable_set_matches_numpy_lookahead(schedule, opt, execution):
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)
    phases = SCHEDULES[schedule]
    model = harness.mlp(opt, harness.start_weights(), execution)
    got, numpy_phases, done = [], [], 0
    for number, (trained, lr) in enumerate(phases):
        set_trainable(model, trained)
        model.compile(optimizer=keras_optimizer(opt, lr), loss="mse",
                      **harness.compile_kwargs(execution))
        if number == 0:
            la = inject(model, k=3, alpha=0.5)
        steps = batches[done:done + STEPS_PER_PHASE[number]]
        done += len(steps)
        for bx, by in steps:
            model.train_on_batch(bx, by)
            got.append(model.get_weights())
        numpy_phases.append((numpy_optimizer(opt, lr), trained,
                             [(bx.astype(np.float64), by.astype(np.float64)) for bx, by in steps]))
    want = reference.mlp_phases_trajectory(harness.start_weights(), numpy_phases, k=3, alpha=0.5)
    harness.assert_trajectories_equal(got, want)
    assert la.step == done


def test_a_frozen_weight_is_never_written_not_even_at_a_sync(execution):
    # alpha=0 would pull every weight back to its slow copy at each sync; a frozen
    # layer must keep exactly the value it had when it was frozen.
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights(), execution)
    la = inject(model, k=2, alpha=0.0)
    model.train_on_batch(x[:16], y[:16])                    # step 1: both layers move
    frozen = model.get_weights()[:2]
    model.layers[0].trainable = False
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse", **harness.compile_kwargs(execution))
    for bx, by in harness.epoch_batches(x, y)[1:6]:          # steps 2-6: syncs at 2, 4, 6
        model.train_on_batch(bx, by)
        for got, want in zip(model.get_weights()[:2], frozen):
            np.testing.assert_array_equal(got, want)
    assert la.step == 6


def test_state_covers_the_weights_being_trained(execution):
    x, y = harness.data()
    model = harness.mlp("sgd", harness.start_weights(), execution)
    model.layers[0].trainable = False
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse", **harness.compile_kwargs(execution))
    la = inject(model, k=3, alpha=0.5)
    for bx, by in harness.epoch_batches(x, y)[:4]:
        model.train_on_batch(bx, by)
    state = la.get_state()
    assert [w.shape for w in state["slow_weights"]] == [(8, 1), (1,)]
    model.layers[0].trainable = True
    model.compile(optimizer=harness.optimizer("sgd"), loss="mse", **harness.compile_kwargs(execution))
    # Not trained yet since it became trainable: its slow weight is its fast weight.
    unfrozen = la.get_state()
    assert len(unfrozen["slow_weights"]) == 4
    harness.assert_trajectories_equal([unfrozen["slow_weights"][:2]], [model.get_weights()[:2]], atol=0)
    harness.assert_trajectories_equal([unfrozen["slow_weights"][2:]], [state["slow_weights"]], atol=0)
