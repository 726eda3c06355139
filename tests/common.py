"""What every test helper shares, without TensorFlow or Keras: the run's constants, its
data, the expected trajectories (tests/reference.py's numpy optimizers and Lookahead)
and the asserts that compare them. tests/harness.py (the TF and Keras 2 side),
tests/keras3_support.py (Keras 3 on every backend) and the workers build on it.

reference.py is imported where it is used: it takes the Lookahead update from
lookahead_inject.rule, and a worker that loads files in a process without
lookahead_inject (workers/keras3_plain_load_worker.py) imports this module too.
"""

import doctest
import os

import numpy as np

#: The scripts the tests run in processes of their own (python workers/NAME.py ...).
WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")

# 48 samples, batches of 16: 3 steps per epoch, so k=5 and k=2 do not divide an epoch.
N_IN, BATCH, STEPS_PER_EPOCH, EPOCHS = 4, 16, 3, 4
STEPS = STEPS_PER_EPOCH * EPOCHS


def data(seed=1, n_out=1):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (BATCH * STEPS_PER_EPOCH, N_IN)).astype("float32")
    y = rng.uniform(-1, 1, (BATCH * STEPS_PER_EPOCH, n_out)).astype("float32")
    return x, y


def epoch_batches(x, y, epochs=EPOCHS):
    """The batches fit(shuffle=False) takes, in order, ``epochs`` times."""
    one = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return one * epochs


def start_weights():
    """The weights every test MLP starts from (Dense(8, tanh) -> Dense(1))."""
    import reference
    return reference.mlp_init(N_IN)


def expected(opt, k, alpha, x, y, steps=STEPS, optimizer_state="keep"):
    """The numpy run's weights after each of the first ``steps`` steps of ``epoch_batches``."""
    import reference
    batches = epoch_batches(x.astype(np.float64), y.astype(np.float64))[:steps]
    return reference.mlp_trajectory(start_weights(), batches, reference.OPTIMIZERS[opt](), k,
                                    alpha, optimizer_state=optimizer_state)


def expected_with_slow(opt, k, alpha, batches, sync_after=()):
    """The numpy run: after each step, (fast weights, slow weights), with an extra
    ``force_sync`` (la.sync()) after the steps in ``sync_after``: there the fast
    weights are those after it, the slow weights those before it."""
    import reference
    params = [np.asarray(p, np.float64) for p in start_weights()]
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


#: A loop of one's own that leaves weights out: steps 3 - 5 train the hidden layer only (the
#: output layer gets no gradient), so it keeps its weights and slow copy and syncs pass it by.
EVERY = (0, 1, 2, 3)
KEPT = [EVERY, EVERY, (0, 1), (0, 1), (0, 1)] + [EVERY] * 7


def expected_subset_run(k, alpha, batches, kept):
    """The numpy run of SGD + Lookahead when step i trains the weights ``kept[i]``."""
    import reference
    params = [np.asarray(p, np.float64) for p in start_weights()]
    sgd, lookahead, out = reference.SGD(0.1), reference.LookaheadSim(k, alpha), []
    for (x, y), keep in zip(batches, kept):
        lookahead.before_fast_step(params, keep)
        grads = reference.mlp_grads(params, x.astype(np.float64), y.astype(np.float64))
        for i, value in zip(keep, sgd.step([params[i] for i in keep], [grads[i] for i in keep],
                                          keep)):
            params[i] = value
        params = lookahead.after_fast_step(params)
        out.append([np.copy(p) for p in params])
    return out


def assert_trajectories_equal(actual, expected_, atol=1e-5):
    """Weights after every step, as ``expected`` gives them."""
    assert len(actual) == len(expected_), (len(actual), len(expected_))
    for step, (got, want) in enumerate(zip(actual, expected_), 1):
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                g, w, rtol=0, atol=atol, err_msg="step {}, weight {}".format(step, i))


def record_plain_loads(folder, ways, load, optimizer_values, kept=lambda warning: True):
    """For a worker that loads files written with Lookahead in a process without
    lookahead_inject: each of ``ways`` (``load(way)`` gives the loaded model) recorded in
    folder/plain_loads.npz, as the weights, ``optimizer_values(way, model)`` and the text
    of every warning the load gave that is ``kept``."""
    import sys
    import warnings
    out = {}
    for way in ways:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = load(way)
        for i, value in enumerate(model.get_weights()):
            out["{}/weight_{}".format(way, i)] = value
        for i, value in enumerate(optimizer_values(way, model)):
            out["{}/optimizer_{}".format(way, i)] = value
        out["{}/warnings".format(way)] = np.array(
            [str(w.message) for w in caught if kept(w)] or [""])
    if "lookahead_inject" in sys.modules:
        raise SystemExit("lookahead_inject was imported: this worker must load without it")
    np.savez(os.path.join(folder, "plain_loads.npz"), **out)


def assert_close(got, want, what, atol=1e-5):
    """One list of weights, named ``what`` in the failure."""
    assert len(got) == len(want), (what, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=0, atol=atol,
                                   err_msg="{}, weight {}".format(what, i))


#: What both LookaheadOptimizers (Keras 2's and Keras 3's) refuse, and what the message
#: names: (arguments, a regular expression).
BAD_OPTIMIZER_ARGUMENTS = [
    ({"k": 3, "sync_period": 4}, "sync_period"),
    ({"alpha": 0.5, "slow_step_size": 0.2}, "slow_step_size"),
    ({"k": 0}, "k=0"),
    ({"alpha": 2.0}, "alpha=2.0"),
    ({"clipnorm": 1.0}, "set clipnorm on the inner optimizer"),
    ({"optimizer_state": "zero"}, "optimizer_state='zero'"),
]


def docstring_examples(objects, optionflags=0):
    """Runs the examples in the docstrings of ``objects`` (modules, classes); returns
    (how many docstrings hold examples, how many examples failed)."""
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=optionflags)
    tests = [test for obj in objects for test in finder.find(obj) if test.examples]
    for test in tests:
        runner.run(test)
    return len(tests), runner.summarize(verbose=False).failed
