"""One half of a resumed training run, in a process of its own (see test_state.py).

    python resume_worker.py MODE FORMAT OPTIMIZER PHASE DIR [OPTIMIZER_STATE [MODEL]]

first:  the start weights, inject, FIRST_STEPS steps, save model and Lookahead state
second: a fresh model (other random weights), compile, inject, load both, SECOND_STEPS steps,
        final weights to DIR/final.npz.
MODEL "built" (harness.mlp) or "unbuilt": the model of both phases is a Sequential without an
input shape (TF checkpoint formats only), built in the first before its weights are set, and
in the second (a fresh one) without weights until its first step, so the checkpoint's
restore waits for the weights and slow copies.
FORMAT: tf_weights, checkpoint (TensorFlow only), h5_and_state_file (weights + state
file), keras3_weights_and_state_file (Keras 3: its .weights.h5 also holds the
optimizer's variables, which load into an optimizer built before load_weights).
Each phase also writes the Lookahead state's momentum copies (optimizer_state="pullback")
as it saved / loaded them: DIR/cache_saved.npz, DIR/cache_loaded.npz.
"""

import os
import sys

import numpy as np

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import configure_mode

MODE, FORMAT, OPTIMIZER, PHASE, DIR = sys.argv[1:6]
OPTIMIZER_STATE = sys.argv[6] if len(sys.argv) > 6 else "keep"
UNBUILT = len(sys.argv) > 7 and sys.argv[7] == "unbuilt"
configure_mode(MODE)

import harness  # noqa: E402  (after configure_mode)
from harness import tf  # noqa: E402  (None where Keras 3 runs on JAX / PyTorch)
from lookahead_inject import inject  # noqa: E402

K, ALPHA, FIRST_STEPS, SECOND_STEPS = 3, 0.5, 4, 5     # stop mid-cycle: 4 is not a multiple of 3


def batches():
    x, y = harness.data()
    return harness.epoch_batches(x, y, 3)[:FIRST_STEPS + SECOND_STEPS]


def save(model, la):
    if FORMAT == "tf_weights":            # TF-format save_weights: optimizer and Lookahead ride along
        model.save_weights(os.path.join(DIR, "ckpt"))
    elif FORMAT == "checkpoint":          # tf.train.Checkpoint of the model and optimizer
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(os.path.join(DIR, "ckpt"))
    else:                                 # .h5 weights + the Lookahead state file
        model.save_weights(harness.h5_path(DIR, "model"))
        la.save(os.path.join(DIR, "lookahead_state"))


def load(model, la):
    if FORMAT == "tf_weights":
        model.load_weights(os.path.join(DIR, "ckpt"))
    elif FORMAT == "checkpoint":
        # save/restore rather than write/read, which TF 2.0 lacks
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(
            tf.train.latest_checkpoint(DIR)).expect_partial()
    else:
        if FORMAT == "keras3_weights_and_state_file":
            # Keras 3 skips the saved optimizer variables (with a warning) when the
            # optimizer has not made its own yet.
            model.optimizer.build(model.trainable_variables)
        model.load_weights(harness.h5_path(DIR, "model"))
        la.load(os.path.join(DIR, "lookahead_state"))


def unbuilt_mlp():
    """``harness.mlp``'s layers without an input shape: no weights until the first step."""
    layers = harness.keras.layers
    model = harness.keras.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer=harness.optimizer(OPTIMIZER), loss="mse")
    assert not model.built
    return model


def main():
    harness.fresh_session()
    steps = batches()
    if PHASE == "first":
        if not UNBUILT:
            model = harness.mlp(OPTIMIZER, harness.start_weights())
        else:
            # The same model in both processes, as a user's script resumes itself (TF 1.x
            # Keras restores a Sequential's layers by their index among its layers).
            model = unbuilt_mlp()
            model.build((None, harness.N_IN))
            model.set_weights([np.asarray(w, "float32") for w in harness.start_weights()])
        la = inject(model, k=K, alpha=ALPHA, optimizer_state=OPTIMIZER_STATE)
        for bx, by in steps[:FIRST_STEPS]:
            model.train_on_batch(bx, by)
        save(model, la)
        np.savez(os.path.join(DIR, "cache_saved.npz"), *la.get_state()["momentum_cache"])
    else:
        model = unbuilt_mlp() if UNBUILT else harness.mlp(OPTIMIZER)
        la = inject(model, k=K, alpha=ALPHA, optimizer_state=OPTIMIZER_STATE)
        load(model, la)
        np.savez(os.path.join(DIR, "cache_loaded.npz"), *la.get_state()["momentum_cache"])
        for bx, by in steps[FIRST_STEPS:]:
            model.train_on_batch(bx, by)
        np.savez(os.path.join(DIR, "final.npz"), *model.get_weights(), step=la.step)


if __name__ == "__main__":
    main()
