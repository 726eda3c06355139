"""``python -m lookahead_inject demo``: the paper's claim on a small real classifier.

Zhang et al. (2019) report that Lookahead makes the inner optimizer more robust to
its learning rate and lowers the variance across runs. The demo trains the same
MLP on scikit-learn's handwritten digits (shipped inside scikit-learn: no
download), with plain SGD and with ``inject(model)`` around the same SGD, over a
range of learning rates and a few seeds, and prints the final training loss and
test accuracy (mean ± std over seeds). ``--plot FILE.png`` draws the loss curves
and accuracy against learning rate (matplotlib).
"""

import time
import warnings

import numpy as np

from .environment import keras_module
from .errors import LookaheadError

LEARNING_RATES = (0.03, 0.1, 0.3, 1.0)


class DemoDependencyError(LookaheadError, ImportError):
    """The demo needs scikit-learn (and matplotlib for --plot)."""


def _digits(seed=0):
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DemoDependencyError(
            "The demo trains on scikit-learn's digits data set, and scikit-learn is not "
            "installed ({}). From a clone of lookahead_inject: pip install \".[demo]\" "
            "(or pip install scikit-learn matplotlib).".format(error)) from error
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int64")
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def _keras(found):
    """(keras, tf): tf.keras and TensorFlow, or Keras 3 itself and None when it runs on
    JAX / PyTorch (where TensorFlow, installed or not, plays no part)."""
    keras = keras_module(found["tensorflow"])
    if found["tensorflow"] is None:
        return keras, None
    import tensorflow as tf
    return keras, tf


def _model(keras, tf, learning_rate, seed, momentum=0.0):
    if hasattr(keras.utils, "set_random_seed"):
        keras.utils.set_random_seed(seed)
    else:                                                   # TF < 2.7
        np.random.seed(seed)
        (tf.random.set_seed if hasattr(tf.random, "set_seed") else tf.compat.v1.set_random_seed)(seed)
    with warnings.catch_warnings():
        # Keras 3 prefers an Input layer; input_shape= is the form every TF 1.14 - 2.21 takes.
        warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")
        model = keras.Sequential([
            keras.layers.Dense(64, activation="relu", input_shape=(64,)),
            keras.layers.Dense(10, activation="softmax"),
        ])
    optimizers = keras.optimizers
    if tf is not None and not tf.executing_eagerly() and hasattr(optimizers, "legacy"):
        optimizers = optimizers.legacy                     # TF >= 2.11 graph mode
    model.compile(optimizer=optimizers.SGD(learning_rate=learning_rate, momentum=momentum),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _train(keras, tf, lookahead, learning_rate, seed, data, epochs, k, alpha, verbose,
           optimizer_state="keep", momentum=0.0):
    from . import inject
    (x, y), (x_test, y_test) = data
    model = _model(keras, tf, learning_rate, seed, momentum)
    if lookahead:
        inject(model, k=k, alpha=alpha, optimizer_state=optimizer_state)
    history = model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=verbose)
    loss = [float(v) if np.isfinite(v) else float("nan") for v in history.history["loss"]]
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return loss, accuracy


def _mean_std(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)), float(np.nanstd(values))


def run(epochs=10, seeds=3, learning_rates=LEARNING_RATES, k=5, alpha=0.5, verbose=0,
        plot=None, echo=print, optimizer_state="keep", momentum=0.0):
    """Train plain SGD and SGD + Lookahead over ``learning_rates`` x ``seeds``;
    print the table, write the plot if asked; returns the results dict.
    ``optimizer_state`` is inject's; ``momentum`` is SGD's, in both columns."""
    data = _digits()
    if plot:
        _check_matplotlib()
    from . import detect

    found = detect()
    keras, tf = _keras(found)
    if optimizer_state != "keep" or momentum:
        # Checked before the runs, so a pullback without momentum fails at once.
        from .arguments import checked_optimizer_state
        checked_optimizer_state(optimizer_state)
        if optimizer_state == "pullback" and not momentum:
            from .errors import InvalidArgumentError
            raise InvalidArgumentError(
                "--optimizer-state pullback pulls SGD's momentum back, and this SGD has none: "
                "add --momentum 0.9 (or another value > 0).")
    echo("lookahead_inject demo: digits (8x8 images, {} train / {} test), MLP 64-64-10, SGD vs "
         "SGD + Lookahead(k={}, alpha={}), {} epochs x {} seeds".format(
             len(data[0][0]), len(data[1][0]), k, alpha, epochs, seeds))
    echo("{}, {} mode, backend {}".format(_what_runs(found), found["mode"], found["backend"]))
    if optimizer_state != "keep" or momentum:
        echo("SGD momentum {} in both columns; at each sync Lookahead's optimizer_state={!r}"
             .format(momentum, optimizer_state))
    results, start = {}, time.time()
    for learning_rate in learning_rates:
        for lookahead in (False, True):
            runs = [_train(keras, tf, lookahead, learning_rate, seed, data, epochs, k, alpha,
                           verbose, optimizer_state, momentum)
                    for seed in range(seeds)]
            results[(learning_rate, lookahead)] = runs
    echo("")
    echo("{:>6} | {:^25} | {:^25}".format("", "final training loss", "test accuracy"))
    echo("{:>6} | {:>12} {:>12} | {:>12} {:>12}".format("lr", "SGD", "+ Lookahead", "SGD",
                                                         "+ Lookahead"))
    for learning_rate in learning_rates:
        cells = []
        for column in ("loss", "accuracy"):
            for lookahead in (False, True):
                runs = results[(learning_rate, lookahead)]
                values = [r[0][-1] for r in runs] if column == "loss" else [r[1] for r in runs]
                cells.append("{:.3f}±{:.3f}".format(*_mean_std(values)))
        echo("{:>6} | {:>12} {:>12} | {:>12} {:>12}".format(learning_rate, *cells))
    echo("({:.0f} s; mean ± std over {} seeds; nan = diverged)".format(time.time() - start, seeds))
    if plot:
        _plot(results, learning_rates, epochs, seeds, k, alpha, found, plot)
        echo("wrote " + plot)
    return results


def _what_runs(found):
    """"TensorFlow 2.15.1 (keras 2 2.15.0)" or "keras 3.15.1 (jax backend), no TensorFlow"."""
    if found["tensorflow"] is None:
        return "{}, no TensorFlow".format(found["keras_label"])
    return "TensorFlow {tensorflow} ({keras} {keras_version})".format(**found)


def _check_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise DemoDependencyError(
            "--plot needs matplotlib ({}). From a clone of lookahead_inject: pip install "
            "\".[demo]\" (or pip install matplotlib).".format(error)) from error


def _plot(results, learning_rates, epochs, seeds, k, alpha, found, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, robustness) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(learning_rates)))
    epochs_axis = np.arange(1, epochs + 1)
    for colour, learning_rate in zip(colours, learning_rates):
        for lookahead, style in ((False, "--"), (True, "-")):
            losses = np.array([r[0] for r in results[(learning_rate, lookahead)]], np.float64)
            curves.plot(epochs_axis, np.nanmean(losses, axis=0), style, color=colour,
                        label="lr {}{}".format(learning_rate, " + LA" if lookahead else ""))
    curves.set_yscale("log")
    curves.set_xlabel("epoch")
    curves.set_ylabel("training loss (mean over seeds)")
    curves.set_title("dashed: SGD, solid: SGD + Lookahead")
    curves.legend(fontsize=7, ncol=2)
    for lookahead, marker, label in ((False, "s", "SGD"),
                                     (True, "o", "SGD + Lookahead(k={}, α={})".format(k, alpha))):
        stats = [_mean_std([r[1] for r in results[(lr, lookahead)]]) for lr in learning_rates]
        robustness.errorbar(learning_rates, [m for m, _ in stats], yerr=[s for _, s in stats],
                            marker=marker, capsize=3, label=label)
    robustness.set_xscale("log")
    robustness.set_xlabel("learning rate")
    robustness.set_ylabel("test accuracy (mean ± std over {} seeds)".format(seeds))
    robustness.set_title("accuracy vs learning rate")
    robustness.legend()
    figure.suptitle("lookahead_inject demo: digits, MLP 64-64-10, {} epochs — {} ({}), backend {}"
                    .format(epochs, _what_runs(found), found["mode"], found["backend"]),
                    fontsize=10)
    figure.tight_layout()
    import os
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
