"""Models and data for the tests of Keras 3 on every backend (TensorFlow, JAX,
PyTorch): test_keras3_midfit.py, test_keras3_files.py, test_keras3_distribution.py
and their subprocess workers.

``import keras`` only, never TensorFlow, so it runs in the envs without it. The
model, data and rates are harness.py's (Dense(8, tanh) -> Dense(1), 3 batches of 16
per epoch), so reference.py's numpy optimizers and Lookahead are the expectation.
"""

import numpy as np

# reference.py is imported where it is used: it takes the Lookahead update from
# lookahead_inject.rule, and the workers that load files in a process without
# lookahead_inject (keras3_plain_load_worker.py) build their models from here.


N_IN, BATCH, STEPS_PER_EPOCH, EPOCHS = 4, 16, 3, 4
STEPS = STEPS_PER_EPOCH * EPOCHS

#: The Lookahead backends that serve Keras 3 (TF, JAX, PyTorch).
KERAS3_BACKENDS = ("keras3", "keras3_jax", "keras3_torch")


def keras3_backend_or_skip_reason():
    """(lookahead backend, None) where Keras 3 is what the tests build with, else
    (None, the reason to skip naming the Keras that runs here)."""
    from lookahead_inject import detect
    try:
        seen = detect()
    except Exception as error:     # no backend fits: the tests of inject say why
        return None, "no Lookahead backend here ({})".format(error)
    if seen["backend"] not in KERAS3_BACKENDS:
        return None, "{} (backend {}) is not Keras 3, which these tests are about".format(
            seen["keras_label"], seen["backend"])
    return seen["backend"], None


def data(seed=1):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (BATCH * STEPS_PER_EPOCH, N_IN)).astype("float32")
    y = rng.uniform(-1, 1, (BATCH * STEPS_PER_EPOCH, 1)).astype("float32")
    return x, y


def epoch_batches(x, y, epochs=EPOCHS):
    """The batches fit(shuffle=False) takes, in order, ``epochs`` times."""
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)] * epochs


def optimizer(name):
    """A fresh Keras 3 optimizer matching reference.OPTIMIZERS[name]."""
    import keras
    return {
        "sgd": lambda: keras.optimizers.SGD(learning_rate=0.1),
        "momentum": lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(learning_rate=0.01),
        # Not in reference.py: for the tests of files, where two optimizers save sections.
        "loss_scaled_adam": lambda: keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(learning_rate=0.01)),
    }[name]()


def mlp(opt="sgd", weights=None, **compile_kwargs):
    """Dense(8, tanh) -> Dense(1), compiled with MSE, weights set to ``weights``."""
    import keras
    model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=optimizer(opt), loss="mse", **compile_kwargs)
    if weights is not None:
        model.set_weights([np.asarray(w, "float32") for w in weights])
    return model


def start_weights():
    import reference
    return reference.mlp_init(N_IN)


def reference_run(opt, k, alpha, batches, sync_after=()):
    """The numpy run: after each step, (fast weights, slow weights), with an extra
    ``force_sync`` (la.sync()) after the steps in ``sync_after``: there the fast
    weights are those after it, the slow weights those before it."""
    params = [np.asarray(p, np.float64) for p in start_weights()]
    import reference
    optimizer_, lookahead = reference.OPTIMIZERS[opt](), reference.LookaheadSim(k, alpha)
    trained, out = range(len(params)), []
    for step, (x, y) in enumerate(batches, 1):
        lookahead.before_fast_step(params, trained)
        params = lookahead.after_fast_step(optimizer_.step(
            params, reference.mlp_grads(params, x.astype(np.float64), y.astype(np.float64))))
        slow = [np.copy(lookahead.slow[i]) for i in trained]
        if step in sync_after:
            params = lookahead.force_sync(params)
        out.append((params, slow))
    return out


def assert_close(got, want, what, atol=1e-5):
    assert len(got) == len(want), (what, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=0, atol=atol,
                                   err_msg="{}, weight {}".format(what, i))
