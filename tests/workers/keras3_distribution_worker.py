"""Keras 3 on JAX: one training run, under keras.distribution.DataParallel over the
host's CPU devices or on one device, in a process of its own (see
test_keras3_distribution.py: XLA_FLAGS, which splits the CPU, must be set before
jax is imported).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python keras3_distribution_worker.py data_parallel|single DIR [inject|optimizer]

Trains the test MLP with Adam and Lookahead(k=3, alpha=0.5) through fit, with a
la.sync() from a callback after step 4, and writes DIR/<mode>.npz: the weights
and slow weights after every step, the step, the number of devices, and whether
the weights and their slow copies are laid out on every device. With ``optimizer``,
``compile(optimizer=LookaheadOptimizer(Adam))`` instead of ``inject``, without the
handle's la.sync() (DIR/<mode>-optimizer.npz; the slow weights there are zeros).
"""

import os
import sys

import numpy as np

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras3_support as support  # noqa: E402

MODE, DIR = sys.argv[1:3]
FORM = sys.argv[3] if len(sys.argv) > 3 else "inject"
K, ALPHA = 3, 0.5
SYNC_AFTER = (4,) if FORM == "inject" else ()


def main():
    import jax
    import keras
    from lookahead_inject import inject
    devices = jax.devices("cpu")
    if MODE == "data_parallel":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model = support.mlp("adam", support.start_weights())
    if FORM == "inject":
        la = inject(model, k=K, alpha=ALPHA)
    else:
        from lookahead_inject import LookaheadOptimizer
        model.compile(optimizer=LookaheadOptimizer(support.optimizer("adam"), k=K, alpha=ALPHA),
                      loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if FORM != "inject":
                weights = self.model.get_weights()
                seen.append((len(seen) + 1, weights, [np.zeros_like(w) for w in weights]))
                return
            step = la.step
            slow = la.get_state()["slow_weights"]
            if step in SYNC_AFTER:
                la.sync()
            seen.append((step, la.model.get_weights(), slow))

    x, y = support.data()
    model.fit(x, y, batch_size=support.BATCH, epochs=support.EPOCHS, shuffle=False, verbose=0,
              callbacks=[Record()])
    # Lookahead's variables live in the optimizer, laid out as the distribution lays out
    # its variables (DataParallel: on every device, like the weights).
    slow_variables = [v for v in model.optimizer.variables if "lookahead_slow" in v.path]
    everywhere = [len(v.value.sharding.device_set) == len(devices)
                  for v in model.trainable_weights + slow_variables]
    np.savez(os.path.join(DIR, MODE + ("" if FORM == "inject" else "-optimizer") + ".npz"),
             steps=np.array([s for s, _, _ in seen]),
             fast=np.array([np.concatenate([w.ravel() for w in f]) for _, f, _ in seen]),
             slow=np.array([np.concatenate([w.ravel() for w in s]) for _, _, s in seen]),
             devices=len(devices), everywhere=np.array(everywhere),
             slow_variables=len(slow_variables))


if __name__ == "__main__":
    main()
