"""One half of a run with ``LookaheadOptimizer`` saved to a ``.keras`` file mid-cycle, in
a process of its own (see test_lookahead_optimizer.py). Keras 3 on any backend.

    python keras3_optimizer_worker.py OPTIMIZER PHASE DIR

first:  the start weights, compile(LookaheadOptimizer(OPTIMIZER)), FIRST_STEPS steps,
        model.save("m.keras")
second: ``from lookahead_inject import LookaheadOptimizer`` (what a script that uses it
        has) and Keras' own ``keras.saving.load_model``, SECOND_STEPS steps; DIR/final.npz
        holds the weights, the optimizer's config and its inner optimizer's class
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras3_support as support  # noqa: E402

OPTIMIZER, PHASE, DIR = sys.argv[1:4]
K, ALPHA, FIRST_STEPS, SECOND_STEPS = 3, 0.5, 4, 5     # 4 is mid-cycle for k=3


def main():
    import keras
    from lookahead_inject import LookaheadOptimizer
    batches = support.epoch_batches(*support.data(), epochs=3)[:FIRST_STEPS + SECOND_STEPS]
    path = os.path.join(DIR, "m.keras")
    if PHASE == "first":
        model = support.mlp(OPTIMIZER, support.start_weights())
        model.compile(optimizer=LookaheadOptimizer(support.optimizer(OPTIMIZER), k=K,
                                                   alpha=ALPHA, optimizer_state="keep"),
                      loss="mse")
        for x, y in batches[:FIRST_STEPS]:
            model.train_on_batch(x, y)
        model.save(path)
        return
    model = keras.saving.load_model(path)
    optimizer = model.optimizer
    config = dict(optimizer.get_config(), inner_class=type(optimizer.inner_optimizer).__name__,
                  iterations=int(keras.ops.convert_to_numpy(optimizer.iterations)))
    for x, y in batches[FIRST_STEPS:]:
        model.train_on_batch(x, y)
    np.savez(os.path.join(DIR, "final.npz"), *model.get_weights(),
             config=json.dumps(config, default=str))


if __name__ == "__main__":
    main()
