"""``python -m lookahead_inject demo``: one small model trained with and without Lookahead."""

import numpy as np


def _problem(seed):
    # A noisy 2-D regression target with some curvature; fixed by the seed.
    rng = np.random.RandomState(seed)
    x = rng.uniform(-2, 2, (512, 2)).astype("float32")
    y = (np.sin(2 * x[:, :1]) * np.cos(x[:, 1:]) + 0.1 * rng.randn(512, 1)).astype("float32")
    return x, y


def _model(tf, weights=None):
    model = tf.keras.Sequential([
        tf.keras.layers.Dense(32, activation="tanh", input_shape=(2,)),
        tf.keras.layers.Dense(32, activation="tanh"),
        tf.keras.layers.Dense(1),
    ])
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    if weights is not None:
        model.set_weights(weights)
    return model


def run(epochs=8, k=5, alpha=0.5, seed=0, verbose=0, echo=print):
    """Train the same model plainly and with ``inject``; print and return both loss curves."""
    import tensorflow as tf
    from . import detect, inject

    echo("lookahead_inject demo on {tensorflow} ({keras}, {mode} mode, backend {backend})".format(
        **detect()))
    x, y = _problem(seed)
    plain = _model(tf)
    start = plain.get_weights()
    lookahead = _model(tf, start)
    inject(lookahead, k=k, alpha=alpha)
    fit = dict(x=x, y=y, batch_size=32, epochs=epochs, shuffle=False, verbose=verbose)
    plain_loss = plain.fit(**fit).history["loss"]
    lookahead_loss = lookahead.fit(**fit).history["loss"]
    echo("SGD(lr=0.1, momentum=0.9) vs the same + Lookahead(k={}, alpha={}), {} steps per epoch"
         .format(k, alpha, len(x) // 32))
    echo("{:>5}  {:>12}  {:>12}".format("epoch", "plain loss", "lookahead"))
    for epoch, (p, l) in enumerate(zip(plain_loss, lookahead_loss), 1):
        echo("{:>5}  {:>12.5f}  {:>12.5f}".format(epoch, p, l))
    return plain_loss, lookahead_loss
