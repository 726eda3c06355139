"""What a step that does not sync pays for the slow copies it is handed (issue #22): a stack
of Dense(64) layers trained with Adam by TF alone (no Keras), with and without the structure
inject adds to the step, built from the library's own pieces: ``common.tf_sync``'s unlowered
Case and its variables found by name (private names, ``_switch_case``, ``_names`` and
``_reached``: what is measured is those pieces), ``common.named_variables`` and
``tf_sync.pull_together`` (the rule).

Variants, each the same training step (forward, gradients, ``tf.compat.v1`` Adam):
  plain           the step alone
  branch          plus a step counter and one unlowered ``Case`` on ``counter % k`` whose
                  taken branch does nothing and whose other branch reads no variable: the
                  counter and one branch, what a step that does not sync must cost
  branch + slow   the same ``Case`` whose other branch is the sync over one slow copy per
                  weight (``slow += 0.5 (fast - slow)``, ``fast <- slow``): every slow copy
                  and weight is an input of the ``Case`` at every step, as in inject's step;
                  k is larger than the run, so that branch never runs
  by name         the same sync, its branch finding each variable it can by its
                  ``shared_name`` (a ``VarHandleOp`` of its own inside the branch): in a
                  session every one, so the ``Case`` takes no variable as input; in a
                  ``tf.function`` the slow copies (``NamedVariable``s, as inject's), so it
                  takes the weights only, as inject's step does
``branch + slow`` minus ``branch`` is what the per-slow-copy inputs cost a step that does not
sync. Modes: ``function`` (a ``tf.function`` called eagerly, TF 2: the tf2_eager and keras3
backends' step) and ``session`` (a TF 1 graph run by a session: the graph backends; TF 1.x,
or TF 2 through ``tf.compat.v1``).

Steady: each round runs a block of ``--steps`` steps of every variant in a rotated order; a
variant's ratio is the median over rounds of its block's time over plain's in that round.
First step: each round also builds every variant afresh (a new graph / a new
``tf.function``) and times the trace (the graph built: for ``function``,
``get_concrete_function``) and the first run (TF's graph optimization and the step) apart.

    python benchmarks/case_inputs.py [--mode function|session] [--rounds 30] [--steps 20]
                                     [--depth 82]

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

from lookahead_inject.backends.common import named_variables, tf_sync  # noqa: E402

WIDTH, BATCH, ALPHA = 64, 64, 0.5
NEVER = 10 ** 9         # the k of the branch variants: the sync branch never runs
VARIANTS = ("plain", "branch", "branch + slow", "by name")


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("function", "session"),
                        default="function" if tf.executing_eagerly() else "session")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--first-rounds", type=int, default=5,
                        help="rounds of first-step timings (each builds every variant afresh)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--depth", type=int, default=82)
    return parser.parse_args()


class Stack(object):
    """The variables of ``depth`` Dense(64) layers, the step's ops, and the structure of a
    variant; built in the current graph (session) or eagerly (function)."""

    def __init__(self, depth, variant):
        rng = np.random.RandomState(0)
        initial = []
        for _ in range(depth):
            initial += [rng.normal(0, 0.1, (WIDTH, WIDTH)).astype("float32"),
                        np.zeros(WIDTH, "float32")]
        self.weights = [tf.Variable(value, name="fast") for value in initial]
        self.optimizer = tf.compat.v1.train.AdamOptimizer(1e-4)
        self.variant = variant
        self.counter = tf.Variable(0, dtype=tf.int64, name="counter")
        if variant == "by name" and tf.executing_eagerly():
            self.slow = [named_variables.NamedVariable(value, "slow") for value in initial]
        elif variant in ("branch + slow", "by name"):
            self.slow = [tf.Variable(value, name="slow") for value in initial]
        else:
            self.slow = []

    def loss(self, x, y):
        h = x
        for i in range(0, len(self.weights), 2):
            h = tf.nn.relu(tf.matmul(h, self.weights[i]) + self.weights[i + 1])
        return tf.reduce_mean(tf.square(h - y))

    def step_ops(self, x, y):
        """The ops of one step (to run in a session, or inside a ``tf.function``)."""
        if tf.executing_eagerly() or _in_function():
            with tf.GradientTape() as tape:
                loss = self.loss(x, y)
            grads = tape.gradient(loss, self.weights)
        else:
            loss = self.loss(x, y)
            grads = tf.gradients(loss, self.weights)
        update = self.optimizer.apply_gradients(list(zip(grads, self.weights)))
        if self.variant == "plain":
            return [update]
        with tf.control_dependencies([update]):
            count = self.counter.assign_add(1)
        phase = tf.cast(tf.math.floormod(count, NEVER), tf.int32)
        # Decided outside the branch, as inject's step does.
        self.names = tf_sync._names(list(zip(self.weights, self.slow)), self.weights + self.slow)
        # The library's Case, kept unlowered: its variables are on one device.
        case = tf_sync._switch_case(phase, [self._sync], default=lambda: tf.constant(False),
                                    captures=self.weights + self.slow)
        return [update, case]

    def _sync(self):
        pairs = list(zip(self.weights, self.slow))
        if self.variant == "by name":
            pairs = tf_sync._reached(pairs, self.names)
        return tf_sync.pull_together(pairs, ALPHA)


def _in_function():
    return tf.compat.v1.get_default_graph().building_function


def data():
    rng = np.random.RandomState(1)
    return (rng.rand(BATCH, WIDTH).astype("float32"), rng.rand(BATCH, WIDTH).astype("float32"))


class FunctionRunner(object):
    """A variant's step as a ``tf.function`` (TF 2 eager)."""

    def __init__(self, depth, variant):
        self.stack = Stack(depth, variant)
        self.x, self.y = (tf.constant(v) for v in data())
        self.step = tf.function(self._step)

    def _step(self, x, y):
        self.stack.step_ops(x, y)

    def trace(self):
        return self.step.get_concrete_function(self.x, self.y)

    def run(self):
        self.step(self.x, self.y)


class SessionRunner(object):
    """A variant's step in a TF 1 graph of its own, run by a session."""

    def __init__(self, depth, variant):
        self.graph = tf.Graph()
        self.depth, self.variant = depth, variant
        self.session = None

    def trace(self):
        with self.graph.as_default():
            self.stack = Stack(self.depth, self.variant)
            x, y = data()
            self.fetches = self.stack.step_ops(tf.constant(x), tf.constant(y))
            init = tf.compat.v1.global_variables_initializer()
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.session.run(init)

    def run(self):
        self.session.run(self.fetches)


def _rotated(variants, round_):
    shift = round_ % len(variants)
    return variants[shift:] + variants[:shift]


def first_step_times(runner_class, variants, depth, rounds):
    """{variant: [(trace s, first run s)]}, every variant built afresh in every round."""
    times = {v: [] for v in variants}
    for round_ in range(rounds):
        for variant in _rotated(variants, round_):
            runner = runner_class(depth, variant)
            start = time.perf_counter()
            runner.trace()
            traced = time.perf_counter()
            runner.run()
            times[variant].append((traced - start, time.perf_counter() - traced))
    return times


def main():
    args = parse()
    if args.mode == "function":
        runner_class = FunctionRunner
    else:
        tf.compat.v1.disable_eager_execution()
        # Resource variables, as tf.keras makes them (a TF 1 ref variable cannot be a Case input).
        tf.compat.v1.enable_resource_variables()
        runner_class = SessionRunner
    load_before = os.getloadavg()[0]
    # Warm up TF's kernels and allocators once, so the first variant built pays no more.
    warm = runner_class(4, "plain")
    warm.trace()
    warm.run()

    first = first_step_times(runner_class, VARIANTS, args.depth, args.first_rounds)
    runners = {}
    for variant in VARIANTS:
        runners[variant] = runner_class(args.depth, variant)
        runners[variant].trace()
        for _ in range(3):
            runners[variant].run()
    ratios = {v: [] for v in VARIANTS}
    plain_ms = []
    for round_ in range(args.rounds):
        seconds = {}
        for variant in _rotated(VARIANTS, round_):
            runner = runners[variant]
            start = time.perf_counter()
            for _ in range(args.steps):
                runner.run()
            seconds[variant] = time.perf_counter() - start
        plain_ms.append(1000 * seconds["plain"] / args.steps)
        for variant in VARIANTS:
            ratios[variant].append(seconds[variant] / seconds["plain"])

    print("TF {} ({} mode), Python {}, {} Dense(64) layers ({} tensors), Adam, batch {}: "
          "{} rounds x {} steps, first step {} rounds; load average {:.1f} before, {:.1f} after"
          .format(tf.__version__, args.mode, platform.python_version(), args.depth,
                  2 * args.depth, BATCH, args.rounds, args.steps, args.first_rounds,
                  load_before, os.getloadavg()[0]))
    print("  plain step: median {:.2f} ms".format(statistics.median(plain_ms)))
    plain_trace = statistics.median(t for t, _ in first["plain"])
    plain_first = statistics.median(r for _, r in first["plain"])
    print("  plain first step: trace {:.2f} s, first run {:.2f} s".format(plain_trace, plain_first))
    for variant in VARIANTS[1:]:
        q1, q3 = np.percentile(ratios[variant], [25, 75])
        trace = statistics.median(t for t, _ in first[variant])
        run = statistics.median(r for _, r in first[variant])
        print("  {:<14} steady step / plain's: median {:.3f} (quartiles {:.3f} - {:.3f}); "
              "trace {:.2f} s ({:.2f}x), first run {:.2f} s ({:.2f}x)".format(
                  variant, statistics.median(ratios[variant]), q1, q3,
                  trace, trace / plain_trace, run, run / plain_first))


if __name__ == "__main__":
    main()
