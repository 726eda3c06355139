"""Per-step overhead of Lookahead variants against plain training, in one process.

    python benchmarks/overhead.py [--mode graph|eager] [--rounds 3] [--repeats 3] [--out FILE]
                                  [--strategy mirrored] [--jit-compile auto|true|false]
    KERAS_BACKEND=jax|torch python benchmarks/overhead.py ...   (Keras 3, no TensorFlow needed)

Variants, each built afresh in every round, each fit timed between two plain fits
(so instance luck and the machine's drift hit all alike), k=5, alpha=0.5:
  plain     the compiled model as it is
  inject    lookahead_inject.inject(model)
  inject reset / inject pullback   the same with optimizer_state="reset" / "pullback"
            (the optimizer's momentum zeroed / pulled back at each sync)
  blog      the blog's wrapper as written (a Python function around the train function,
            two extra session runs every k steps); graph mode only
  callback  a Keras callback doing Lookahead with get/set of the weights after each batch
  tfa       tensorflow_addons.optimizers.Lookahead around the optimizer, where it installs
  plain, 2nd instance   a control: another plain model (instance-to-instance noise)
Models: "mlp" 784-1024-512-10 (1.3 M parameters, batch 128) and "tiny" 4-8-1 (batch 16).
Reported: the plain model's median ms per step; each variant's ratio to plain, the median
over rounds x repeats of its time over the mean of its two neighbouring plain fits; the
median time of inject() itself and of the first step (graph / trace build); and the floor,
the sync alone (one lerp + copy over all trainable weights) per step (/ k) as a fraction
of the plain step.
--strategy mirrored (TF 2 eager) builds every model under a MirroredStrategy over two logical
CPUs. With KERAS_BACKEND=jax or torch the script uses Keras 3 alone (the seam: `keras`, the
module models are built from, and the few helpers below that read / write weights or time the
floor per framework).
Never run as a test: timings are only meaningful as ratios within one run.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np

K_STEPS, ALPHA = 5, 0.5
# (layer sizes, batch, steps per timed fit): the tiny model's step is under a millisecond,
# so it gets more steps per sample to rise above this machine's timer and scheduler jitter.
MODELS = {"mlp": ((784, 1024, 512, 10), 128, 100), "tiny": ((4, 8, 1), 16, 1000)}


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("graph", "eager"), default=None,
                        help="graph: disable eager execution first (TF 2); default: TF's own")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh model instances per variant, one set per round")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per instance")
    parser.add_argument("--models", default="mlp,tiny")
    parser.add_argument("--strategy", choices=("mirrored",), default=None,
                        help="mirrored: every model under tf.distribute.MirroredStrategy over "
                             "two logical CPUs (TF 2 eager)")
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default=None,
                        help="Keras 3: compile(jit_compile=...); default: Keras' own")
    parser.add_argument("--label", default=None,
                        help="appended to the section's title, e.g. the code measured when it "
                             "is not the checkout's (before / after a change)")
    parser.add_argument("--out", default=None,
                        help="write this run's section into that markdown file (replacing the "
                             "section of the same TF / mode)")
    return parser.parse_args()


ARGS = parse()
# The per-framework seam: Keras 3 on JAX / PyTorch runs without TensorFlow.
NATIVE = os.environ.get("KERAS_BACKEND") if os.environ.get("KERAS_BACKEND") in ("jax", "torch") \
    else None
if NATIVE:
    import keras  # noqa: E402
    tf = None
    GRAPH = False
    if ARGS.mode == "graph" or ARGS.strategy:
        sys.exit("--mode graph / --strategy need TensorFlow (KERAS_BACKEND={})".format(NATIVE))
else:
    import tensorflow as tf  # noqa: E402
    if ARGS.mode == "graph" and tf.executing_eagerly():
        tf.compat.v1.disable_eager_execution()
    GRAPH = not tf.executing_eagerly()
    keras = tf.keras
    if ARGS.strategy:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from harness import split_cpu_in_two  # noqa: E402
        split_cpu_in_two()
KERAS3 = NATIVE is not None or hasattr(keras, "ops")
if NATIVE == "jax":
    # JAX's jitted steps are ~5x shorter than TF's (tiny: ~0.15 ms): more steps per fit,
    # so each timed fit still lasts about a second.
    MODELS = {"mlp": MODELS["mlp"][:2] + (300,), "tiny": MODELS["tiny"][:2] + (5000,)}
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if ARGS.strategy else None

import lookahead_inject  # noqa: E402
if GRAPH:
    # The engine's K for the blog replica.
    from lookahead_inject.backends.graph import _train_function  # noqa: E402


def optimizer():
    module = keras.optimizers
    if GRAPH and hasattr(module, "legacy"):
        module = module.legacy
    return module.SGD(learning_rate=0.01, momentum=0.9)


def build(sizes, opt=None):
    if STRATEGY is not None:
        with STRATEGY.scope():
            return _build(sizes, opt)
    return _build(sizes, opt)


def _build(sizes, opt):
    first = ([keras.Input((sizes[0],)), keras.layers.Dense(sizes[1], activation="relu")]
             if KERAS3 else
             [keras.layers.Dense(sizes[1], activation="relu", input_shape=(sizes[0],))])
    layers = first + [keras.layers.Dense(n, activation="relu") for n in sizes[2:-1]]
    layers += [keras.layers.Dense(sizes[-1])]
    model = keras.Sequential(layers)
    kwargs = {}
    if ARGS.jit_compile:
        kwargs["jit_compile"] = {"auto": "auto", "true": True, "false": False}[ARGS.jit_compile]
    model.compile(optimizer=opt or optimizer(), loss="mse", **kwargs)
    return model


def get_values(variables):
    if GRAPH:
        return keras.backend.batch_get_value(list(variables))
    if NATIVE:
        return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]
    return [v.numpy() for v in variables]


def set_values(variables, values):
    if GRAPH:
        keras.backend.batch_set_value(list(zip(variables, values)))
    else:
        for variable, value in zip(variables, values):
            variable.assign(value)


class CallbackLookahead(keras.callbacks.Callback):
    """Lookahead as a Keras callback: weights to numpy and back every k batches."""

    def __init__(self):
        super(CallbackLookahead, self).__init__()
        self.count, self.slow = 0, None

    def weights(self):
        model = self.model
        if NATIVE == "jax":
            # JAX's fit keeps the values in its own state between steps; the sync writes
            # them into the variables and makes the next step read them back from there.
            model.jax_state_sync()
        return model.trainable_weights

    def on_train_batch_end(self, batch, logs=None):
        if self.slow is None:
            self.slow = get_values(self.weights())
        self.count += 1
        if self.count % K_STEPS == 0:
            fast = get_values(self.weights())
            self.slow = [s + ALPHA * (f - s) for s, f in zip(self.slow, fast)]
            set_values(self.weights(), self.slow)


def blog_inject(model):
    """The blog's Lookahead.inject (tf 1.14 / 1.15 / 2.0 variants) as written, except that K is
    the engine's own backend module (the public one lacks symbolic_learning_phase) and the slow
    variables copy the values (K.variable(p) races p's initializer on a fresh model)."""
    K = _train_function.engine_backend(model)
    model._make_train_function()         # let Keras settle sample weights / compiled state
    if hasattr(model, "_all_metrics_tensors"):                       # TF 1.14
        metrics_tensors = [model._all_metrics_tensors[m] for m in model.metrics_names[1:]]
    else:
        metrics_tensors = [m._call_result for m in model._get_training_eval_metrics()
                           if hasattr(m, "_call_result")]
    inputs = model._feed_inputs + model._feed_targets + model._feed_sample_weights
    if not isinstance(K.symbolic_learning_phase(), int):
        inputs += [K.symbolic_learning_phase()]
    fast_params = model._collected_trainable_weights
    with K.get_graph().as_default():
        training_updates = model.optimizer.get_updates(params=fast_params, loss=model.total_loss)
        slow_params = [K.variable(K.get_value(p)) for p in fast_params]
        fast_updates = (training_updates + model.get_updates_for(None)
                        + model.get_updates_for(model.inputs))
        slow_updates, copy_updates = [], []
        for p, q in zip(fast_params, slow_params):
            slow_updates.append(K.update(q, q + ALPHA * (p - q)))
            copy_updates.append(K.update(p, q))
        fast_train_function = K.function(inputs, [model.total_loss] + metrics_tensors,
                                         updates=fast_updates, name="fast_train_function",
                                         **model._function_kwargs)
    count = [0]

    def F(inputs):
        count[0] += 1
        R = fast_train_function(inputs)
        if count[0] % K_STEPS == 0:
            K.batch_get_value(slow_updates)
            K.batch_get_value(copy_updates)
        return R
    model.train_function = F


def tfa_optimizer():
    if tf is None or STRATEGY is not None:
        return None
    try:
        import tensorflow_addons as tfa
    except ImportError:
        return None
    inner = (tf.keras.optimizers.legacy.SGD if hasattr(tf.keras.optimizers, "legacy")
             else tf.keras.optimizers.SGD)(learning_rate=0.01, momentum=0.9)
    return tfa.optimizers.Lookahead(inner, sync_period=K_STEPS, slow_step_size=ALPHA)


def variants():
    out = {"plain": lambda sizes: (build(sizes), [])}

    def injected(sizes, optimizer_state="keep"):
        model = build(sizes)
        start = time.perf_counter()
        lookahead = lookahead_inject.inject(model, k=K_STEPS, alpha=ALPHA,
                                            optimizer_state=optimizer_state)
        return model, [], time.perf_counter() - start, lookahead
    out["inject"] = injected
    out["inject reset"] = lambda sizes: injected(sizes, "reset")
    out["inject pullback"] = lambda sizes: injected(sizes, "pullback")
    if GRAPH:
        def blog(sizes):
            model = build(sizes)
            start = time.perf_counter()
            blog_inject(model)
            return model, [], time.perf_counter() - start
        out["blog"] = blog
    out["callback"] = lambda sizes: (build(sizes), [CallbackLookahead()])
    # A control: a second plain model, timed like the variants; its ratio (ideally 1.00)
    # shows how far any ratio of the table can be trusted on this machine.
    out["plain, 2nd instance"] = lambda sizes: (build(sizes), [])
    if not GRAPH and tfa_optimizer() is not None:
        out["tfa"] = lambda sizes: (build(sizes, tfa_optimizer()), [])
    return out


def floor_seconds(model, repeats=20):
    """One lerp + copy over the model's trainable weights (the sync alone), median seconds."""
    fast = model.trainable_weights
    if NATIVE:
        return _floor_native(fast, repeats)
    if GRAPH:
        K = _train_function.engine_backend(model)
        with K.get_graph().as_default():
            slow = [K.variable(np.zeros(w.shape.as_list(), "float32")) for w in fast]
            updates = []
            for f, s in zip(fast, slow):
                updates.append(f.assign(s.assign_add(ALPHA * (f - s))))
            op = tf.group(*updates)
        session = K.get_session()
        run = lambda: session.run(op)  # noqa: E731
    else:
        slow = [tf.Variable(tf.zeros_like(w)) for w in fast]

        @tf.function
        def sync():
            for f, s in zip(fast, slow):
                f.assign(s.assign_add(ALPHA * (f - s)))
        run = sync
    return _median_time(run, repeats)


def _median_time(run, repeats):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _floor_native(weights, repeats):
    if NATIVE == "jax":
        import jax

        @jax.jit
        def sync(fast, slow):
            slow = [s + ALPHA * (f - s) for f, s in zip(fast, slow)]
            return list(slow), slow
        fast = [w.value for w in weights]
        slow = [keras.ops.zeros_like(f) for f in fast]
        return _median_time(lambda: jax.block_until_ready(sync(fast, slow)), repeats)
    import torch
    fast = [w.value.detach().clone() for w in weights]
    slow = [torch.zeros_like(f) for f in fast]

    def run():
        with torch.no_grad():
            for f, s in zip(fast, slow):
                s.add_(f - s, alpha=ALPHA)
                f.copy_(s)
    return _median_time(run, repeats)


def build_all(sizes, batch, x, y, order):
    """Fresh instances of every variant, built and given their first step in ``order``."""
    built, setup, first = {}, {}, {}
    makers = variants()
    for variant in order:
        made = makers[variant](sizes)
        model, callbacks = made[0], made[1]
        setup[variant] = made[2] if len(made) > 2 else None
        start = time.perf_counter()
        model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
        first[variant] = time.perf_counter() - start
        built[variant] = (model, callbacks, made[3] if len(made) > 3 else None)
    return built, setup, first


def rotated(names, by):
    by %= len(names)
    return names[by:] + names[:by]


def measure(sizes, batch, steps):
    rng = np.random.RandomState(0)
    x = rng.rand(steps * batch, sizes[0]).astype("float32")
    y = rng.rand(steps * batch, sizes[-1]).astype("float32")
    names = list(variants())
    others = names[1:]
    plain_times, ratios = [], {variant: [] for variant in others}
    setups, firsts = {variant: [] for variant in names}, {variant: [] for variant in names}

    def timed(variant):
        model, callbacks = built[variant][:2]
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
        return (time.perf_counter() - start) / steps

    for round_ in range(ARGS.rounds):
        # A new graph / session each round: TF 1.15's plain tiny step went from 0.9 to 1.5 ms
        # with the earlier rounds' models left in the graph.
        keras.backend.clear_session()
        # Fresh instances each round, built in a rotated order, so no variant keeps the
        # luck (or bad luck) of one instance or of one build position.
        built, setup, first = build_all(sizes, batch, x, y, rotated(names, round_))
        for variant in names:
            setups[variant].append(setup[variant])
            firsts[variant].append(first[variant])
        for repeat in range(ARGS.repeats):
            # Each variant's ratio is to the plain fits just before and after it: this VM
            # flips between a fast and a slow state every few seconds (the same plain MLP
            # instance at 16 or 26 ms/step, the tiny one at 0.9 or 1.35 ms) and now and then
            # stalls a whole fit by ~1.3 s, whatever runs; so only neighbours in time
            # compare, and the median drops the stalls. The rotation moves who runs next to whom.
            before = timed("plain")
            plain_times.append(before)
            for variant in rotated(others, round_ + repeat):
                own = timed(variant)
                after = timed("plain")
                plain_times.append(after)
                ratios[variant].append(own / ((before + after) / 2))
                before = after
    ratio = {"plain": 1.0}
    ratio.update({variant: statistics.median(r) for variant, r in ratios.items()})
    setup = {variant: None if None in s else statistics.median(s) for variant, s in setups.items()}
    first = {variant: statistics.median(s) for variant, s in firsts.items()}
    plain = statistics.median(plain_times)
    floor = floor_seconds(built["plain"][0]) / K_STEPS
    return plain, ratio, setup, first, floor, memory(built["inject"][0], built["inject"][2])


def memory(model, lookahead):
    """Bytes of the model's trainable weights, and of the variables inject added."""
    trainable = sum(w.nbytes for w in get_values(model.trainable_weights))
    state = lookahead.get_state()
    extra = sum(w.nbytes for w in state["slow_weights"]) + 8          # + the int64 step
    return trainable, extra


def machine():
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "{}, {} cores".format(model, os.cpu_count())


def write_section(path, title, text):
    """Put ``text`` into ``path`` in place of the section headed ``title`` (or append it)."""
    sections = open(path).read().split("\n### ") if os.path.exists(path) else [""]
    head, rest = sections[0], ["### " + part for part in sections[1:]]
    rest = [part for part in rest if part.splitlines()[0] != "### " + title] + [text]
    with open(path, "w") as out:
        out.write(head.rstrip("\n") + "\n\n" + "\n".join(sorted(
            (part.rstrip("\n") + "\n" for part in rest), key=lambda p: p.split("\n")[0])))


def command_options():
    options = ""
    for name in ("mode", "strategy", "jit_compile", "models"):
        value = getattr(ARGS, name)
        if value and not (name == "models" and value == "mlp,tiny"):
            options += " --{} {}".format(name.replace("_", "-"), value)
    if ARGS.label:
        options += " --label '{}'".format(ARGS.label)
    if NATIVE:
        options = "KERAS_BACKEND={} python benchmarks/overhead.py{}".format(NATIVE, options)
        return options
    return "python benchmarks/overhead.py" + options


def main():
    found = lookahead_inject.detect()
    if NATIVE:
        title = "Keras {keras_version} on {keras_backend} (no TF), backend {backend}".format(**found)
    else:
        title = "TF {tensorflow} ({keras} {keras_version}), {mode} mode, backend {backend}".format(
            **found)
    if ARGS.jit_compile:
        title += ", jit_compile={}".format(ARGS.jit_compile)
    if ARGS.strategy:
        title += ", MirroredStrategy (2 logical CPUs)"
    if ARGS.label:
        title += ", " + ARGS.label
    # Other processes share this machine: the 1-minute load average before and after says
    # how busy it was (ratios are paired in time, absolute ms are not comparable across runs).
    load_before = os.getloadavg()[0]
    lines = ["| model | plain ms/step | variant | ratio to plain | inject() / setup s | first step s | floor (sync ÷ k) / plain step |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for model_name in ARGS.models.split(","):
        sizes, batch, steps = MODELS[model_name]
        plain, ratio, setup, first, floor, (trainable, extra) = measure(sizes, batch, steps)
        notes.append("{}: inject adds {:,} bytes of variables for {:,} bytes of trainable "
                     "weights ({:.4f}x: one slow copy + the 8-byte step)".format(
                         model_name, extra, trainable, extra / trainable))
        for variant in ratio:
            lines.append("| {} | {:.3f} | {} | {:.2f} | {} | {:.2f} | {} |".format(
                model_name, plain * 1e3, variant, ratio[variant],
                "{:.3f}".format(setup[variant]) if setup.get(variant) is not None else "–",
                first[variant], "{:.3f}".format(floor / plain) if variant == "plain" else ""))
    lines = ["### " + title, "",
             "{} · {} · Python {} · {} rounds of fresh instances x {} repeats (fit over {} steps) · k={} · `{}` · load average {:.1f} before, {:.1f} after".format(
                 datetime.date.today(), machine(), platform.python_version(), ARGS.rounds, ARGS.repeats,
                 " / ".join("{} {}".format(m, MODELS[m][2]) for m in ARGS.models.split(",")),
                 K_STEPS, command_options(), load_before, os.getloadavg()[0]),
             ""] + lines
    text = "\n".join(lines + [""] + ["- " + note for note in notes]) + "\n"
    print(text)
    if ARGS.out:
        write_section(ARGS.out, title, text)


if __name__ == "__main__":
    sys.exit(main())
