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

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, steps_ahead=0):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.t, self.m, self.v = 0, None, None
        self.steps_ahead = steps_ahead

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        self.m = [self.b1 * m + (1 - self.b1) * g for m, g in zip(self.m, grads)]
        self.v = [self.b2 * v + (1 - self.b2) * g * g for v, g in zip(self.v, grads)]
        t = self.t + self.steps_ahead
        lr_t = self.lr * np.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
        return [p - lr_t * m / (np.sqrt(v) + self.eps) for p, m, v in zip(params, self.m, self.v)]

    def reset(self):
        """Moments back to zero; the count t (bias correction) goes on, as Keras' iterations."""
        self.m = self.v = None


#: name -> factory(lr=the harness's rate) of the numpy optimizer.
OPTIMIZERS = {
    "sgd": lambda lr=0.1: SGD(lr),
    "momentum": lambda lr=0.05: SGD(lr, momentum=0.9),
    "adam": lambda lr=0.01: Adam(lr),
}


#: Standalone Keras 2.2 / 2.3 (keras/optimizers.py, Adam.get_updates): the step
#: runs ``K.update_add(iterations, 1)`` and reads ``t = iterations + 1`` in the same
#: session run with no order between them; the increment runs first, so step n
#: corrects with t = n + 1 (tf.keras orders the read before the increment: t = n).
STANDALONE_KERAS_OPTIMIZERS = dict(OPTIMIZERS, adam=lambda lr=0.01: Adam(lr, steps_ahead=1))


class LookaheadSim(object):
    """Algorithm 1 over the weights being trained: a weight takes its slow copy
    (slow <- fast) at the first step that trains it after a step that did not;
    after steps k, 2k, ... of the one step count: slow <- slow + alpha (fast - slow),
    fast <- slow, for the trained weights only. At an in-step sync the inner
    ``optimizer`` (set per phase) keeps its state ("keep"), has it reset ("reset"),
    or has its SGD velocity pulled back: v <- alpha v + (1 - alpha) v_cached,
    v_cached <- copy(v), v_cached from 0 per weight ("pullback")."""

    def __init__(self, k, alpha, optimizer_state="keep", optimizer=None):
        self.k, self.alpha, self.step = k, alpha, 0
        self.slow, self.trained = {}, ()
        self.optimizer_state, self.optimizer, self.cached_velocity = optimizer_state, optimizer, {}

    def before_fast_step(self, fast, trained):
        for i in trained:
            if i not in self.trained:
                self.slow[i] = np.copy(fast[i])
        self.trained = tuple(trained)

    def after_fast_step(self, fast):
        self.step += 1
        if self.step % self.k:
            return fast
        fast = self.force_sync(fast)
        if self.optimizer_state == "reset":
            self.optimizer.reset()
        elif self.optimizer_state == "pullback":
            # The optimizer's velocity lists the trained weights in their order.
            velocity = list(self.optimizer.velocity)
            for n, i in enumerate(self.trained):
                cached = self.cached_velocity.get(i, np.zeros_like(velocity[n]))
                velocity[n] = self.alpha * velocity[n] + (1 - self.alpha) * cached
                self.cached_velocity[i] = np.copy(velocity[n])
            self.optimizer.velocity = velocity
        return fast

    def force_sync(self, fast):
        """A sync of the trained weights, also outside the schedule (la.sync());
        the step count stays."""
        fast = list(fast)
        for i in self.trained:
            self.slow[i] = self.slow[i] + self.alpha * (fast[i] - self.slow[i])
            fast[i] = np.copy(self.slow[i])
        return fast


def mlp_trajectory(params, batches, optimizer, k, alpha, force_sync_after=(),
                   optimizer_state="keep"):
    """Weights after each step of ``optimizer`` + Lookahead(k, alpha, optimizer_state)
    on the MLP (with extra syncs after the steps in ``force_sync_after``)."""
    return mlp_phases_trajectory(params, [(optimizer, range(len(params)), batches)], k, alpha,
                                 force_sync_after, optimizer_state)


def mlp_phases_trajectory(params, phases, k, alpha, force_sync_after=(), optimizer_state="keep"):
    """Like ``mlp_trajectory`` over phases ``(optimizer, trained weight indices,
    batches)``, as after freezing or unfreezing layers and compiling again: each
    phase trains only its weights, with its own optimizer; one Lookahead throughout."""
    params = [np.asarray(p, np.float64) for p in params]
    lookahead, out, step = LookaheadSim(k, alpha, optimizer_state), [], 0
    for optimizer, trained, batches in phases:
        trained = list(trained)
        lookahead.optimizer = optimizer
        for x, y in batches:
            step += 1
            lookahead.before_fast_step(params, trained)
            grads = mlp_grads(params, x, y)
            new = optimizer.step([params[i] for i in trained], [grads[i] for i in trained])
            params = list(params)
            for i, p in zip(trained, new):
                params[i] = p
            params = lookahead.after_fast_step(params)
            if step in force_sync_after:
                params = lookahead.force_sync(params)
            out.append(params)
    return out


def mlp_accumulating_trajectory(params, batches, optimizer, k, alpha, accumulate):
    """Weights after each batch when ``optimizer`` steps once every ``accumulate`` batches,
    on the mean of their gradients (Keras 3 ``gradient_accumulation_steps``), and
    Lookahead(k, alpha) counts those steps, not the batches."""
    params = [np.asarray(p, np.float64) for p in params]
    lookahead, out, pending = LookaheadSim(k, alpha), [], []
    for x, y in batches:
        lookahead.before_fast_step(params, range(len(params)))
        pending.append(mlp_grads(params, x, y))
        if len(pending) == accumulate:
            mean = [np.mean(grads, axis=0) for grads in zip(*pending)]
            params = lookahead.after_fast_step(optimizer.step(params, mean))
            pending = []
        out.append(params)
    return out
