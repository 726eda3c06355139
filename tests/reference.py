"""An independent numpy simulation of the optimizers plus Lookahead, in float64.

Nothing here imports TensorFlow: the gradients of the test MLP are derived by
hand, the optimizers follow the formulas Keras documents, and Lookahead is the
paper's Algorithm 1. Tests compare the library's weights to these, step by step.
"""

import numpy as np


def mlp_init(n_in=4, n_hidden=8, seed=0):
    """Weights of Dense(n_hidden, tanh) -> Dense(1), in Keras' get_weights() order."""
    rng = np.random.RandomState(seed)
    return [rng.uniform(-0.8, 0.8, (n_in, n_hidden)), rng.uniform(-0.1, 0.1, n_hidden),
            rng.uniform(-0.8, 0.8, (n_hidden, 1)), rng.uniform(-0.1, 0.1, 1)]


def mlp_grads(params, x, y):
    """Gradients of mean((tanh(x W1 + b1) W2 + b2 - y)^2) over the batch."""
    w1, b1, w2, b2 = params
    h = np.tanh(x @ w1 + b1)
    out = h @ w2 + b2
    d_out = 2.0 * (out - y) / len(x)
    d_h = (d_out @ w2.T) * (1.0 - h ** 2)
    return [x.T @ d_h, d_h.sum(0), h.T @ d_out, d_out.sum(0)]


class SGD(object):
    """Keras SGD: v <- momentum * v - lr * g; p <- p + v (p - lr * g without momentum)."""

    def __init__(self, lr, momentum=0.0):
        self.lr, self.momentum, self.velocity = lr, momentum, None

    def step(self, params, grads):
        if self.velocity is None:
            self.velocity = [np.zeros_like(p) for p in params]
        self.velocity = [self.momentum * v - self.lr * g for v, g in zip(self.velocity, grads)]
        return [p + v for p, v in zip(params, self.velocity)]

    def reset(self):
        self.velocity = None


class Adam(object):
    """Keras Adam: p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.t, self.m, self.v = 0, None, None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        self.m = [self.b1 * m + (1 - self.b1) * g for m, g in zip(self.m, grads)]
        self.v = [self.b2 * v + (1 - self.b2) * g * g for v, g in zip(self.v, grads)]
        lr_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        return [p - lr_t * m / (np.sqrt(v) + self.eps) for p, m, v in zip(params, self.m, self.v)]

    def reset(self):
        """Moments back to zero; the count t (bias correction) goes on, as Keras' iterations."""
        self.m = self.v = None


OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "momentum": lambda: SGD(0.05, momentum=0.9),
    "adam": lambda: Adam(0.01),
}


class LookaheadSim(object):
    """Algorithm 1: slow <- fast at the first step; after steps k, 2k, ...:
    slow <- slow + alpha (fast - slow), fast <- slow. At a sync the inner ``optimizer``
    keeps its state ("keep"), has it reset ("reset"), or has its SGD velocity pulled
    back: v <- alpha v + (1 - alpha) v_cached, v_cached <- copy(v), v_cached from 0
    ("pullback")."""

    def __init__(self, k, alpha, optimizer_state="keep", optimizer=None):
        self.k, self.alpha, self.step, self.slow = k, alpha, 0, None
        self.optimizer_state, self.optimizer, self.cached_velocity = optimizer_state, optimizer, None

    def after_fast_step(self, fast):
        self.step += 1
        if self.step % self.k:
            return fast
        self.slow = [s + self.alpha * (f - s) for s, f in zip(self.slow, fast)]
        if self.optimizer_state == "reset":
            self.optimizer.reset()
        elif self.optimizer_state == "pullback":
            velocity = self.optimizer.velocity
            if self.cached_velocity is None:
                self.cached_velocity = [np.zeros_like(v) for v in velocity]
            self.optimizer.velocity = [self.alpha * v + (1 - self.alpha) * c
                                       for v, c in zip(velocity, self.cached_velocity)]
            self.cached_velocity = [np.copy(v) for v in self.optimizer.velocity]
        return [np.copy(s) for s in self.slow]

    def force_sync(self, fast):
        """An extra sync outside the schedule (la.sync()); the step count stays."""
        if self.slow is None:
            return fast
        self.slow = [s + self.alpha * (f - s) for s, f in zip(self.slow, fast)]
        return [np.copy(s) for s in self.slow]

    def before_fast_step(self, fast):
        if self.slow is None:
            self.slow = [np.copy(f) for f in fast]


def mlp_trajectory(params, batches, optimizer, k, alpha, force_sync_after=(),
                   optimizer_state="keep"):
    """Weights after each step of ``optimizer`` + Lookahead(k, alpha, optimizer_state)
    on the MLP (with extra syncs after the steps in ``force_sync_after``)."""
    params = [np.asarray(p, np.float64) for p in params]
    lookahead, out = LookaheadSim(k, alpha, optimizer_state, optimizer), []
    for step, (x, y) in enumerate(batches, 1):
        lookahead.before_fast_step(params)
        params = optimizer.step(params, mlp_grads(params, x, y))
        params = lookahead.after_fast_step(params)
        if step in force_sync_after:
            params = lookahead.force_sync(params)
        out.append(params)
    return out
