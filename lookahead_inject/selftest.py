"""``python -m lookahead_inject selftest``: is Lookahead exact on the installed TensorFlow
(or on Keras 3 with JAX / PyTorch)?

For CI matrices that run one training script against many TF pins. Every mode this
TF offers (graph for TF 1.x; graph and eager for TF 2 with Keras 2; eager for
Keras 3 on any backend) is checked in a process of its own (graph vs eager is process-wide): a
small tanh MLP trained with SGD + Lookahead(k=3, alpha=0.5) through
train_on_batch, fit and fit_generator / fit(generator), compared after every step
with a float64 numpy simulation. One line per mode (a mode that the dispatch table
has no backend for, such as Keras 3's graph mode, is "not available"); the exit code
is non-zero on any mismatch, or when no mode is available.
"""

import json
import os
import subprocess
import sys
import time

from packaging.version import Version

from . import dispatch, environment
from .errors import LookaheadError, UnsupportedEnvironmentError

K, ALPHA, LR, TOLERANCE = 3, 0.5, 0.1, 1e-5


def _data():
    import numpy as np
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (32, 3)).astype("float32")
    y = rng.uniform(-1, 1, (32, 1)).astype("float32")
    weights = [rng.uniform(-0.8, 0.8, (3, 6)), np.zeros(6), rng.uniform(-0.8, 0.8, (6, 1)),
               np.zeros(1)]
    return x, y, [w.astype("float32") for w in weights]


def _reference(weights, batches, alpha):
    """float64 SGD on mean((tanh(x W1 + b1) W2 + b2 - y)^2) plus Lookahead(K, alpha)."""
    import numpy as np
    from .rule import numpy_rule
    fast = [np.asarray(w, np.float64) for w in weights]
    slow, out = [np.copy(w) for w in fast], []
    for step, (x, y) in enumerate(batches, 1):
        w1, b1, w2, b2 = fast
        hidden = np.tanh(x @ w1 + b1)
        error = 2.0 * (hidden @ w2 + b2 - y) / len(x)
        back = (error @ w2.T) * (1 - hidden ** 2)
        grads = [x.T @ back, back.sum(0), hidden.T @ error, error.sum(0)]
        fast = [w - LR * g for w, g in zip(fast, grads)]
        if step % K == 0:
            slow = numpy_rule.pull(fast, slow, alpha)
            fast = [np.copy(s) for s in slow]
        out.append(fast)
    return out


def check_this_process(reference_alpha=ALPHA):
    """Train and compare in this process's mode; returns a result dict."""
    import numpy as np
    from . import detect, inject

    found = detect()
    keras = environment.keras_module(found["tensorflow"])
    x, y, weights = _data()
    model = keras.Sequential([keras.layers.Dense(6, activation="tanh", input_shape=(3,)),
                              keras.layers.Dense(1)])
    # TF >= 2.11 in graph mode trains only with the legacy optimizers.
    optimizers = keras.optimizers
    if found["mode"] == "graph" and hasattr(optimizers, "legacy"):
        optimizers = optimizers.legacy
    model.compile(optimizer=optimizers.SGD(learning_rate=LR), loss="mse")
    model.set_weights(weights)
    inject(model, k=K, alpha=ALPHA)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]          # 4 per epoch
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            recorded.append(self.model.get_weights())

    for bx, by in batches:
        model.train_on_batch(bx, by)
        recorded.append(model.get_weights())
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])

    def generator():
        while True:
            for batch in batches:
                yield batch
    # Keras 3 has no fit_generator (and Keras 2's warns); fit takes the generator there.
    fit = getattr(model, "fit_generator", None) if found["keras"] != "keras 3" else None
    (fit or model.fit)(generator(), steps_per_epoch=4, epochs=1, verbose=0, callbacks=[Record()])
    expected = _reference(weights, [(bx.astype(np.float64), by.astype(np.float64))
                                    for bx, by in batches * 3], reference_alpha)
    error = max(float(np.abs(np.asarray(g, np.float64) - w).max())
                for got, want in zip(recorded, expected) for g, w in zip(got, want))
    return {"mode": found["mode"], "backend": found["backend"], "steps": len(recorded),
            "max_error": error, "ok": len(recorded) == len(expected) and error <= TOLERANCE}


def _describe_in_a_child():
    """The installed TF as a child process sees it (this process stays TF-free)."""
    code = ("import json; from lookahead_inject import environment as e\n"
            "try:\n"
            "    env = e.detect_environment()\n"
            "    print('ENV ' + json.dumps([env.tf_version and str(env.tf_version), env.keras, "
            "env.keras_version, env.mode, env.keras_backend]))\n"
            "except e.UnsupportedEnvironmentError as error:\n"
            "    print('ERROR ' + json.dumps(str(error)))\n")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in out.stdout.splitlines():
        if line.startswith("ENV "):
            tf_version, keras, keras_version, mode, keras_backend = json.loads(line[4:])
            return environment.Environment(tf_version and Version(tf_version), keras,
                                           keras_version, mode, keras_backend)
        if line.startswith("ERROR "):
            raise UnsupportedEnvironmentError(json.loads(line[6:]))
    raise UnsupportedEnvironmentError(
        "Could not inspect the installed TensorFlow / Keras: {}".format(
            (out.stderr.strip().splitlines() or ["no output"])[-1]))


def modes():
    """[(mode, None or why it is not available)] for graph and eager on the installed TF.

    Raises the dispatch table's explanation when no mode has a backend (no TF, or
    Keras 3 on another backend)."""
    found = _describe_in_a_child()
    out = []
    for mode in sorted((environment.EAGER, environment.GRAPH), key=lambda m: m != found.mode):
        if found.tf_version is None and mode == environment.GRAPH:
            out.append((mode, "not available: {} has no graph mode (TensorFlow is not "
                              "used)".format(found.describe())))
            continue
        try:
            dispatch.choose_backend(found._replace(mode=mode))
            out.append((mode, None))
        except LookaheadError:
            out.append((mode, "not available: no backend for {}".format(
                found._replace(mode=mode).describe())))
    if all(why for _, why in out):
        dispatch.choose_backend(found)      # raises the table's explanation and its fix
    return out


def _child(mode, reference_alpha):
    if mode == "graph":
        import tensorflow as tf
        if tf.executing_eagerly():
            tf.compat.v1.disable_eager_execution()
    print("SELFTEST " + json.dumps(check_this_process(reference_alpha)))


def run(reference_alpha=ALPHA, echo=print):
    """Check every mode in its own process; returns the exit code (0 = all exact)."""
    failures = 0
    for mode, unavailable in modes():
        if unavailable:
            echo("{:<6} {}".format(mode, unavailable))
            continue
        start = time.time()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run(
            [sys.executable, "-m", "lookahead_inject.selftest", "--child", mode,
             "--reference-alpha", str(reference_alpha)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            timeout=300, env=env)
        lines = [l for l in out.stdout.splitlines() if l.startswith("SELFTEST ")]
        if out.returncode or not lines:
            failures += 1
            echo("{:<6} FAILED to run: {}".format(mode, (out.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        result = json.loads(lines[-1][len("SELFTEST "):])
        failures += not result["ok"]
        echo("{:<6} {:<10} {} ({} steps, max error {:.1e}, {:.1f} s)".format(
            mode, result["backend"], "ok" if result["ok"] else "MISMATCH", result["steps"],
            result["max_error"], time.time() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("graph", "eager"))
    # Only to show that the check can fail: compare against another alpha.
    parser.add_argument("--reference-alpha", type=float, default=ALPHA)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.reference_alpha)
    else:
        sys.exit(run(args.reference_alpha))
