"""An independent numpy simulation of the optimizers plus Lookahead, in float64.

Nothing here imports TensorFlow: the gradients of the test MLP are derived by
hand, the optimizers follow the formulas Keras documents, and Lookahead is the
paper's Algorithm 1 with the library's numpy rule (``lookahead_inject.rule.numpy_rule``,
itself pinned by tests/test_update_rule.py). Tests compare the library's weights to
these, step by step.
"""

import numpy as np

from lookahead_inject.rule import numpy_rule


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
    """Keras SGD: v <- momentum * v - lr * g; p <- p + v (p - lr * g without momentum).

    A step may update a subset of the weights (``indices``: their positions in the
    model's weights), as a Keras optimizer keeps one slot per variable."""

    def __init__(self, lr, momentum=0.0):
        self.lr, self.momentum, self.slots = lr, momentum, {}

    def step(self, params, grads, indices=None):
        indices = range(len(params)) if indices is None else indices
        out = []
        for i, p, g in zip(indices, params, grads):
            v = self.momentum * self.slots.get(i, np.zeros_like(p)) - self.lr * g
            self.slots[i] = v
            out.append(p + v)
        return out

    @property
    def velocity(self):
        """The slots in the order of the weights' positions."""
        return [self.slots[i] for i in sorted(self.slots)]

    @velocity.setter
    def velocity(self, values):
        self.slots = dict(zip(sorted(self.slots), values))

    @property
    def state(self):
        """Per kind of slot, weight position -> slot."""
        return [self.slots]


class Adam(object):
    """Keras Adam: p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps); t
    counts every update (Keras' ``iterations``), whatever subset it updates."""

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, steps_ahead=0):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.t, self.m, self.v = 0, {}, {}
        self.steps_ahead = steps_ahead

    def step(self, params, grads, indices=None):
        indices = range(len(params)) if indices is None else indices
        self.t += 1
        t = self.t + self.steps_ahead
        lr_t = self.lr * np.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
        out = []
        for i, p, g in zip(indices, params, grads):
            self.m[i] = self.b1 * self.m.get(i, np.zeros_like(p)) + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v.get(i, np.zeros_like(p)) + (1 - self.b2) * g * g
            out.append(p - lr_t * self.m[i] / (np.sqrt(self.v[i]) + self.eps))
        return out

    @property
    def state(self):
        """Per kind of slot, weight position -> slot (the count t, bias correction, is
        not one: it goes on through a reset, as Keras' iterations)."""
        return [self.m, self.v]


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
    """Algorithm 1 over the weights being trained, with the one rule for when a slow
    copy is taken: at the first step that trains the weight, and again only at the
    first step that trains it after a ``compile()`` that found it not trainable
    (``compiled``). A step that leaves a weight out (its gradient dropped) neither
    writes it nor forgets its copy. After steps k, 2k, ... of the one step count:
    slow <- slow + alpha (fast - slow), fast <- slow, for the weights that step
    trains. At an in-step sync the inner ``optimizer`` (set per phase) keeps its
    state ("keep"), has the trained weights' state reset ("reset"), or has their
    SGD velocity pulled back: v <- alpha v + (1 - alpha) v_cached, v_cached <- copy(v),
    v_cached from 0 per weight ("pullback")."""

    def __init__(self, k, alpha, optimizer_state="keep", optimizer=None):
        self.k, self.alpha, self.step = k, alpha, 0
        self.slow, self.trained, self.taken = {}, (), set()
        self.optimizer_state, self.optimizer, self.cached_velocity = optimizer_state, optimizer, {}

    def compiled(self, trainable):
        """A ``compile()`` with ``trainable`` the model's trainable weights' indices: a
        weight it finds frozen takes a new slow copy when it is next trained."""
        self.taken &= set(trainable)

    def before_fast_step(self, fast, trained):
        for i in trained:
            if i not in self.taken:
                self.slow[i] = np.copy(fast[i])
                self.taken.add(i)
        self.trained = tuple(trained)

    def after_fast_step(self, fast):
        self.step += 1
        if self.step % self.k:
            return fast
        fast = self.force_sync(fast)
        if self.optimizer_state == "reset":
            for slots in self.optimizer.state:
                held = [i for i in self.trained if i in slots]
                slots.update(zip(held, numpy_rule.reset([slots[i] for i in held])))
        elif self.optimizer_state == "pullback":
            velocity = self.optimizer.slots
            cached = [self.cached_velocity.get(i, np.zeros_like(velocity[i]))
                      for i in self.trained]
            pulled = numpy_rule.pullback([velocity[i] for i in self.trained], cached, self.alpha)
            for i, value in zip(self.trained, pulled):
                velocity[i], self.cached_velocity[i] = value, np.copy(value)
        return fast

    def force_sync(self, fast):
        """A sync of the trained weights, also outside the schedule (la.sync());
        the step count stays."""
        fast = list(fast)
        pulled = numpy_rule.pull([fast[i] for i in self.trained],
                                 [self.slow[i] for i in self.trained], self.alpha)
        for i, value in zip(self.trained, pulled):
            self.slow[i], fast[i] = value, np.copy(value)
        return fast


def mlp_trajectory(params, batches, optimizer, k, alpha, force_sync_after=(),
                   optimizer_state="keep"):
    """Weights after each step of ``optimizer`` + Lookahead(k, alpha, optimizer_state)
    on the MLP (with extra syncs after the steps in ``force_sync_after``)."""
    return mlp_phases_trajectory(params, [(optimizer, range(len(params)), batches)], k, alpha,
                                 force_sync_after, optimizer_state)


def mlp_phases_trajectory(params, phases, k, alpha, force_sync_after=(), optimizer_state="keep"):
    """Like ``mlp_trajectory`` over phases ``(optimizer, trained weight indices, batches)``,
    as after freezing or unfreezing layers and compiling again: each phase starts with
    a ``compile()`` and trains only its weights, with its optimizer (the same object in
    two phases: one optimizer instance compiled again); one Lookahead throughout.

    A phase may add a fourth item, False: no ``compile()`` at its start (a loop of the
    user's own). A batch may be ``(x, y, indices)``: that step updates only ``indices``
    (of the phase's weights), as a loop that drops the weights without a gradient."""
    params = [np.asarray(p, np.float64) for p in params]
    lookahead, out, step = LookaheadSim(k, alpha, optimizer_state), [], 0
    for phase in phases:
        optimizer, trained, batches = phase[:3]
        trained = list(trained)
        if len(phase) < 4 or phase[3]:
            lookahead.compiled(trained)
        lookahead.optimizer = optimizer
        for batch in batches:
            x, y = batch[:2]
            this_step = list(batch[2]) if len(batch) > 2 else trained
            step += 1
            lookahead.before_fast_step(params, this_step)
            grads = mlp_grads(params, x, y)
            new = optimizer.step([params[i] for i in this_step], [grads[i] for i in this_step],
                                 this_step)
            params = list(params)
            for i, p in zip(this_step, new):
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
