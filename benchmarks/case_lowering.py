"""Whether the TF sync's Case ops run faster kept unlowered (what ``common.tf_sync`` does
where the variables are on one device) or lowered, in a ``tf.function`` (TF 2 eager with
Keras 2 or tf-keras: the tf2_eager backend), on a stack of Dense layers.

Three models in one process: plain, injected with the Case ops lowered, injected with them
kept unlowered. The lowered one is traced while ``tf_sync._on_one_device`` answers False
(as it does under a tf.distribute strategy), which leaves TF's lowering on. Each round
times a block of each model (an epoch of ``--steps`` batches through fit, or as many
train_on_batch calls), in a rotated order; a variant's ratio is the median over rounds
of its block's time over plain's in the same round. The blocks are short (about a
second), so the machine's speed flips hit the three alike.

    python benchmarks/case_lowering.py [--rounds 40] [--steps 50] [--depth 82] [--api fit]
    TF_USE_LEGACY_KERAS=1 python benchmarks/case_lowering.py     # tf-keras on TF >= 2.16

Never run as a test: times are only meaningful as ratios within one run.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import lookahead_inject  # noqa: E402
from lookahead_inject import environment  # noqa: E402
from lookahead_inject.backends.common import tf_sync  # noqa: E402

K, ALPHA, WIDTH, BATCH = 5, 0.5, 64, 64


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--depth", type=int, default=82)
    parser.add_argument("--api", choices=("train_on_batch", "fit"), default="fit",
                        help="fit: a block is one epoch of --steps batches")
    return parser.parse_args()


def keras_module():
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras
        return tf_keras
    return tf.keras


def stack(keras, depth):
    layers = [keras.layers.Dense(WIDTH, activation="relu", input_shape=(WIDTH,))]
    layers += [keras.layers.Dense(WIDTH, activation="relu") for _ in range(depth - 2)]
    model = keras.Sequential(layers + [keras.layers.Dense(WIDTH)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def injected(keras, depth):
    model = stack(keras, depth)
    lookahead_inject.inject(model, k=K, alpha=ALPHA)
    return model


def main():
    args = parse()
    keras = keras_module()
    rng = np.random.RandomState(0)
    x = rng.rand(BATCH * args.steps, WIDTH).astype("float32")
    y = rng.rand(BATCH * args.steps, WIDTH).astype("float32")

    def block(model):
        if args.api == "fit":
            model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        else:
            for i in range(args.steps):
                model.train_on_batch(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
    models = {"plain": stack(keras, args.depth),
              "inject, Case lowered": injected(keras, args.depth),
              "inject, Case unlowered": injected(keras, args.depth)}
    for name, model in models.items():
        # The first block traces the step (and takes the slow copies, and syncs).
        on_one_device = tf_sync._on_one_device
        if name == "inject, Case lowered":
            tf_sync._on_one_device = lambda variables: False
        try:
            block(model)
        finally:
            tf_sync._on_one_device = on_one_device
    names, ratios = list(models), {name: [] for name in models}
    for round_ in range(args.rounds):
        order = names[round_ % 3:] + names[:round_ % 3]
        seconds = {}
        for name in order:
            start = time.perf_counter()
            block(models[name])
            seconds[name] = time.perf_counter() - start
        for name in names:
            ratios[name].append(seconds[name] / seconds["plain"])
    print("TF {}, {}, Python {}, {} Dense layers, Adam, k={}: {} rounds x {} steps ({}), "
          "load average {:.1f}".format(tf.__version__, environment.detect_environment().keras,
                                       platform.python_version(), args.depth, K, args.rounds,
                                       args.steps, args.api, os.getloadavg()[0]))
    for name in names[1:]:
        print("  {:<24} step time / plain's: median {:.3f} (quartiles {:.3f} - {:.3f})".format(
            name, statistics.median(ratios[name]), *np.percentile(ratios[name], [25, 75])))


if __name__ == "__main__":
    main()
