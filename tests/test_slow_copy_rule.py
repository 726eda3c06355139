"""When a weight's slow copy is taken: one rule on every backend.

A weight takes its slow copy at the first step that trains it, and again only at the
first step that trains it after a ``compile()`` that found it not trainable. A step
that leaves a weight out (a loop of the user's own that drops the weights without a
gradient) neither writes that weight nor forgets its slow copy. Each scenario is
written the way users write it and compared, step by step, with the numpy Lookahead of
``reference.mlp_phases_trajectory``: the same trajectory on TensorFlow (tf.function and
run_eagerly), JAX and PyTorch.
"""

import numpy as np
import pytest

import harness
import reference
from lookahead_inject import inject

BASE, HEAD, ALL = (0, 1), (2, 3), (0, 1, 2, 3)      # get_weights() indices of the two Dense layers
K, ALPHA = 3, 0.5


def numpy_batches(batches):
    return [tuple(np.asarray(a, np.float64) for a in batch[:2]) + tuple(batch[2:])
            for batch in batches]


def set_trainable(model, trained):
    model.layers[0].trainable = BASE[0] in trained
    model.layers[1].trainable = HEAD[0] in trained


def one_optimizer_compiled_again(phases):
    """The numpy optimizer of each phase when one Keras optimizer is compiled for all: the
    same one, its momentum carried over; on standalone Keras 2.2 / 2.3 a new one per
    phase, since their get_updates makes the momentum variables anew at each compile."""
    one = reference.OPTIMIZERS["momentum"]()
    return [reference.OPTIMIZERS["momentum"]() if harness.STANDALONE else one
            for _ in range(phases)]


def skip_where_keras_cannot_compile_one_optimizer_for_fewer_weights():
    if harness.KERAS_BACKEND == "jax":
        pytest.skip("Keras {} on JAX: an optimizer built on 4 weights cannot be compiled again "
                    "for 2 (stateless_apply demands the weights it was built with; plain "
                    "training fails alike)".format(harness.ENVIRONMENT.keras_version))


def test_one_optimizer_compiled_again_after_a_freeze_retakes_only_the_unfrozen_copies(execution):
    skip_where_keras_cannot_compile_one_optimizer_for_fewer_weights()
    # The Keras transfer-learning guide's freeze / unfreeze, compiling with the model's
    # own optimizer each time (its momentum carries over); k=3 puts syncs inside each phase.
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)[:12]
    phases = [(ALL, batches[:4]), (HEAD, batches[4:8]), (ALL, batches[8:12])]
    model = harness.mlp("momentum", harness.start_weights(), execution)
    la = inject(model, k=K, alpha=ALPHA)
    got = []
    for number, (trained, steps) in enumerate(phases):
        if number:
            set_trainable(model, trained)
            model.compile(optimizer=model.optimizer, loss="mse",
                          **harness.compile_kwargs(execution))
        for bx, by in steps:
            model.train_on_batch(bx, by)
            got.append(model.get_weights())
    optimizers = one_optimizer_compiled_again(len(phases))
    want = reference.mlp_phases_trajectory(
        harness.start_weights(),
        [(optimizer, trained, numpy_batches(steps))
         for optimizer, (trained, steps) in zip(optimizers, phases)], K, ALPHA)
    harness.assert_trajectories_equal(got, want)
    assert la.step == 12


def test_a_sync_while_a_layer_is_frozen_moves_only_the_weights_being_trained(execution):
    skip_where_keras_cannot_compile_one_optimizer_for_fewer_weights()
    x, y = harness.data()
    model = harness.mlp("momentum", harness.start_weights(), execution)
    la = inject(model, k=K, alpha=0.0)      # alpha=0: a sync puts each weight back to its start
    for bx, by in harness.epoch_batches(x, y)[:2]:
        model.train_on_batch(bx, by)
    before = model.get_weights()
    set_trainable(model, HEAD)
    model.compile(optimizer=model.optimizer, loss="mse", **harness.compile_kwargs(execution))
    la.sync()
    after = model.get_weights()
    for i in BASE:
        np.testing.assert_array_equal(after[i], before[i])
    start = harness.start_weights()
    for i in HEAD:
        np.testing.assert_allclose(after[i], start[i], rtol=0, atol=1e-6)
        assert not np.allclose(before[i], start[i], atol=1e-4)   # so the sync did move it


def test_a_freeze_and_unfreeze_without_a_step_between_retakes_the_unfrozen_copies(execution):
    # Compiled frozen, then compiled unfrozen before any step: the first compile found the
    # base frozen, so the base takes a new slow copy (get_state() shows its fast weights
    # until then), while the head keeps the copy of its first step.
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)[:4]
    model = harness.mlp("momentum", harness.start_weights(), execution)
    la = inject(model, k=K, alpha=ALPHA)
    got = []
    for bx, by in batches[:2]:
        model.train_on_batch(bx, by)
        got.append(model.get_weights())
    for trained in (HEAD, ALL):
        set_trainable(model, trained)
        model.compile(optimizer=model.optimizer, loss="mse", **harness.compile_kwargs(execution))
    slow, fast, start = la.get_state()["slow_weights"], model.get_weights(), harness.start_weights()
    for i in BASE:
        np.testing.assert_array_equal(slow[i], fast[i])
    for i in HEAD:
        np.testing.assert_allclose(slow[i], start[i], rtol=0, atol=1e-6)
    for bx, by in batches[2:]:
        model.train_on_batch(bx, by)
        got.append(model.get_weights())
    first, frozen, unfrozen = one_optimizer_compiled_again(3)
    want = reference.mlp_phases_trajectory(
        harness.start_weights(),
        [(first, ALL, numpy_batches(batches[:2])), (frozen, HEAD, []),
         (unfrozen, ALL, numpy_batches(batches[2:]))], K, ALPHA)
    harness.assert_trajectories_equal(got, want)


# A loop of the user's own over 9 steps, k=3: the base layer is left out at a sync (step 3)
# and between syncs (step 5).
STEP_SUBSETS = (ALL, ALL, HEAD, ALL, HEAD, ALL, ALL, ALL, ALL)


def _applier(model, loop):
    """``apply(grads, indices)``: the update of the trainable weights at ``indices``, as a
    loop of the user's own writes it for this Keras (a traced step captures the variables;
    a new set of them is a new trace)."""
    optimizer, variables = model.optimizer, model.trainable_weights

    def update(grads, indices):
        chosen = [variables[i] for i in indices]
        if harness.KERAS_3:
            optimizer.apply(grads, chosen)
        else:
            optimizer.apply_gradients(zip(grads, chosen))
    if loop == "tf_function":
        update = harness.tf.function(update)
    return lambda grads, indices: update([harness.constant(g) for g in grads], tuple(indices))


def _skip_where_no_loop_of_ones_own(loop):
    if harness.GRAPH or harness.STANDALONE:
        pytest.skip("{} in graph mode: an optimizer update is an op for a session, not a "
                    "call a loop of one's own makes".format(harness.ENVIRONMENT.describe()))
    if loop == "tf_function":
        harness.skip_without_tensorflow("no tf.function")


def _check_loop(loop, subsets):
    """A loop of the user's own whose steps update ``subsets`` of the weights, against
    the numpy Lookahead."""
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)[:len(subsets)]
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    if hasattr(model.optimizer, "build"):
        # Keras 2.11+ and Keras 3 build an optimizer on the weights of its first apply
        # (the legacy optimizers of TF < 2.11 make slots per variable as they come): a
        # loop that leaves some out of it builds it first, as keras.io's loops do.
        model.optimizer.build(model.trainable_weights)
    elif loop == "tf_function" and set(subsets[0]) != set(ALL):
        pytest.skip("{}: the optimizer makes a weight's slots when it first comes, which a "
                    "tf.function may not do after its first trace (plain training fails "
                    "alike)".format(harness.ENVIRONMENT.describe()))
    apply = _applier(model, loop)
    got = []
    for (bx, by), subset in zip(batches, subsets):
        params = [np.asarray(w, np.float64) for w in model.get_weights()]
        grads = reference.mlp_grads(params, bx.astype(np.float64), by.astype(np.float64))
        apply([grads[i].astype("float32") for i in subset], subset)
        got.append(model.get_weights())
    want = reference.mlp_phases_trajectory(
        harness.start_weights(),
        [(reference.OPTIMIZERS["momentum"](), ALL,
          numpy_batches([(bx, by, subset) for (bx, by), subset in zip(batches, subsets)]))],
        K, ALPHA)
    harness.assert_trajectories_equal(got, want)
    assert la.step == len(subsets)


@pytest.mark.parametrize("loop", ["eager", "tf_function"])
def test_a_loop_that_leaves_weights_out_of_some_steps_keeps_their_slow_copies(loop):
    _skip_where_no_loop_of_ones_own(loop)
    _check_loop(loop, STEP_SUBSETS)


@pytest.mark.parametrize("loop", ["eager", "tf_function"])
def test_a_weight_left_out_of_the_first_step_takes_its_slow_copy_when_first_trained(loop):
    # The base layer is first trained at step 2, after the step count left 0.
    _skip_where_no_loop_of_ones_own(loop)
    _check_loop(loop, (HEAD, ALL, ALL, ALL, ALL, ALL))


@pytest.mark.parametrize("written_back", ["model", "model_and_optimizer"])
def test_a_jitted_loop_of_the_users_own_then_fit_counts_only_the_state_written_back(written_back):
    # keras.io, "Writing a training loop from scratch in JAX": a jax.jit step calling
    # optimizer.stateless_apply; the guide writes back the model's variables only.
    # What the user did not write back never happened, for Lookahead as for the optimizer.
    if harness.KERAS_BACKEND != "jax":
        pytest.skip("{}: the loop under test is JAX's (jax.jit, stateless_apply)".format(
            harness.ENVIRONMENT.describe()))
    import jax
    keras = harness.keras
    x, y = harness.data()
    batches = harness.epoch_batches(x, y)[:12]
    model = harness.mlp("momentum", harness.start_weights())
    la = inject(model, k=K, alpha=ALPHA)
    optimizer, loss_fn = model.optimizer, keras.losses.MeanSquaredError()
    optimizer.build(model.trainable_variables)

    def compute_loss_and_updates(trainable, non_trainable, bx, by):
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, bx)
        return loss_fn(by, y_pred), non_trainable

    grad_fn = jax.value_and_grad(compute_loss_and_updates, has_aux=True)

    @jax.jit
    def train_step(state, data):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, *data)
        trainable, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    for bx, by in batches[:4]:
        _, state = train_step(state, (bx, by))
    trainable, non_trainable, optimizer_variables = state
    written = [(model.trainable_variables, trainable),
               (model.non_trainable_variables, non_trainable)]
    if written_back == "model_and_optimizer":
        written.append((optimizer.variables, optimizer_variables))
    for variables, values in written:
        for variable, value in zip(variables, values):
            variable.assign(value)
    got = []
    for bx, by in batches[4:]:
        model.fit(bx, by, batch_size=len(bx), epochs=1, shuffle=False, verbose=0)
        got.append(model.get_weights())
    first, rest = numpy_batches(batches[:4]), numpy_batches(batches[4:])
    if written_back == "model_and_optimizer":
        want = reference.mlp_trajectory(harness.start_weights(), first + rest,
                                        reference.OPTIMIZERS["momentum"](), K, ALPHA)[4:]
        steps = 12
    else:
        # The optimizer's state (momentum, Lookahead's count and slow copies) was not
        # written back: fit starts both afresh from the weights the loop wrote.
        after_loop = reference.mlp_trajectory(harness.start_weights(), first,
                                              reference.OPTIMIZERS["momentum"](), K, ALPHA)[-1]
        want = reference.mlp_trajectory(after_loop, rest, reference.OPTIMIZERS["momentum"](),
                                        K, ALPHA)
        steps = 8
    harness.assert_trajectories_equal(got, want)
    assert la.step == steps
