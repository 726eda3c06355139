"""One half of a resumed Keras 3 training run, in a process of its own (see
test_keras3_files.py). Keras 3 on any backend (TensorFlow, JAX, PyTorch).

    python keras3_resume_worker.py FORMAT OPTIMIZER PHASE DIR

FORMAT says what carries the model, the optimizer's own state and the Lookahead state:
  keras_and_state_file      model.save("m.keras") + la.save; keras.saving.load_model
  weights_and_state_file    model.save_weights("w.weights.h5") + la.save; a fresh model
                            (other random weights), inject, optimizer.build, load_weights
  keras_and_get_state       model.save("m.keras") + la.get_state() in an .npz;
                            load_model, inject, la.set_state
  keras_alone               model.save("m.keras") alone; lookahead_inject.load_model,
                            whose Lookahead a second inject finds
first:  the start weights, inject, FIRST_STEPS steps, save
second: load as FORMAT says, SECOND_STEPS steps; DIR/final.npz holds the weights, the slow
        weights and the step
"""

import os
import sys

import numpy as np

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras3_support as support  # noqa: E402

FORMAT, OPTIMIZER, PHASE, DIR = sys.argv[1:5]
K, ALPHA, FIRST_STEPS, SECOND_STEPS = 3, 0.5, 4, 5     # stop mid-cycle: 4 is not a multiple of 3


def path(name):
    return os.path.join(DIR, name)


def save(model, la):
    if FORMAT == "weights_and_state_file":
        model.save_weights(path("w.weights.h5"))
    else:
        model.save(path("m.keras"))
    if FORMAT == "keras_alone":
        return
    if FORMAT == "keras_and_get_state":
        state = la.get_state()
        np.savez(path("state.npz"), *state["slow_weights"], step=state["step"])
    else:
        la.save(path("lookahead_state"))


def load():
    import keras
    import lookahead_inject
    from lookahead_inject import inject
    if FORMAT == "keras_alone":
        model = lookahead_inject.load_model(path("m.keras"))
        la = lookahead_inject.of(model)
        assert inject(model, k=K, alpha=ALPHA) is la, "a second inject started another"
        return model, la
    if FORMAT == "weights_and_state_file":
        model = support.mlp(OPTIMIZER)
        la = inject(model, k=K, alpha=ALPHA)
        # Keras 3 loads the saved optimizer variables only into a built optimizer.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(path("w.weights.h5"))
    else:
        model = keras.saving.load_model(path("m.keras"))
        la = inject(model, k=K, alpha=ALPHA)
    if FORMAT == "keras_and_get_state":
        with np.load(path("state.npz")) as saved:
            slow = [saved["arr_{}".format(i)] for i in range(len(model.trainable_weights))]
            la.set_state({"step": int(saved["step"]), "slow_weights": slow, "k": K,
                          "alpha": ALPHA})
    else:
        la.load(path("lookahead_state"))
    return model, la


def main():
    from lookahead_inject import inject
    batches = support.epoch_batches(*support.data(), epochs=3)[:FIRST_STEPS + SECOND_STEPS]
    if PHASE == "first":
        model = support.mlp(OPTIMIZER, support.start_weights())
        la = inject(model, k=K, alpha=ALPHA)
        for x, y in batches[:FIRST_STEPS]:
            model.train_on_batch(x, y)
        save(model, la)
    else:
        model, la = load()
        for x, y in batches[FIRST_STEPS:]:
            model.train_on_batch(x, y)
        state = la.get_state()
        np.savez(path("final.npz"), *(model.get_weights() + state["slow_weights"]),
                 step=state["step"])


if __name__ == "__main__":
    main()
