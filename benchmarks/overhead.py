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
  inject, no input shape   (dense82) inject on the model built without an input shape
  blog      the blog's wrapper as written (a Python function around the train function,
            two extra session runs every k steps); graph mode only
  LookaheadOptimizer   model.compile(optimizer=LookaheadOptimizer(<the plain optimizer>))
            (Keras 2 on TF 2 eager, tf-keras, Keras 3)
  callback  a Keras callback doing Lookahead with get/set of the weights after each batch
  tfa       tensorflow_addons.optimizers.Lookahead around the optimizer, where it installs
  plain, 2nd instance   a control: another plain model (instance-to-instance noise)
  optax     (Keras 3 on JAX) optax.lookahead(optax.adam) in a plain jax.jit loop over the
            model's stateless_call; "optax plain" is the same loop with optax.adam alone
  timm      (Keras 3 on PyTorch) timm's Lookahead around torch.optim.Adam in a plain torch
            loop over the model (a torch Module); "timm plain" is the loop with Adam alone
Models: "mlp" 784-1024-512-10 (1.3 M parameters, batch 128) and "tiny" 4-8-1 (batch 16),
SGD with momentum; with real tensor counts (issue #22), Adam: "resnet50" (keras.applications,
weights=None, 64x64x3, 10 classes, batch 8; 161 trainable tensors), "bert" (7 encoder blocks of
BERT-base's per-layer structure, shrunk from width 768 / 12 heads / FFN 3072 to 256 / 4 / 1024
so a CPU run stays short: 16 tensors per block, 114 in all; sequence 32, batch 8) and
"dense82" (82 Dense(64), 164 tensors, batch 64). --skip drops variants (e.g. reset,pullback
for the big models).
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
MODELS = {"mlp": ((784, 1024, 512, 10), 128, 100), "tiny": ((4, 8, 1), 16, 1000),
          # The big models (issue #22) are built by the functions named here (see
          # BIG_MODELS below); ResNet-50's step is ~50x the MLP's, so fewer steps per fit.
          "resnet50": ("resnet50", 8, 4), "bert": ("bert", 8, 10), "dense82": ("dense82", 64, 30)}


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("graph", "eager"), default=None,
                        help="graph: disable eager execution first (TF 2); default: TF's own")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh model instances per variant, one set per round")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per instance")
    parser.add_argument("--models", default="mlp,tiny",
                        help="comma-separated, of mlp, tiny, resnet50, bert, dense82")
    parser.add_argument("--skip", default="",
                        help="comma-separated words: variants whose name has one are left out "
                             "(e.g. reset,pullback)")
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
    MODELS.update({"mlp": MODELS["mlp"][:2] + (300,), "tiny": MODELS["tiny"][:2] + (5000,),
                   "resnet50": MODELS["resnet50"][:2] + (8,), "bert": MODELS["bert"][:2] + (20,),
                   "dense82": MODELS["dense82"][:2] + (200,)})
if NATIVE == "torch":
    # Keras 3's PyTorch step runs op by op from Python: the 82-layer stack takes ~0.4 s a
    # step on this machine (loaded), so fewer steps per fit of the big models.
    MODELS.update({"resnet50": MODELS["resnet50"][:2] + (3,), "bert": MODELS["bert"][:2] + (5,),
                   "dense82": MODELS["dense82"][:2] + (8,)})
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if ARGS.strategy else None

import lookahead_inject  # noqa: E402
if GRAPH:
    # The engine's K for the blog replica.
    from lookahead_inject.backends.graph import _train_function  # noqa: E402


def is_big(spec):
    return isinstance(spec, str)


def optimizer(spec=None):
    """SGD with momentum for mlp / tiny; Adam for the big models (``spec`` a name)."""
    module = keras.optimizers
    if GRAPH and hasattr(module, "legacy"):
        module = module.legacy
    if is_big(spec):
        return module.Adam(learning_rate=1e-3)
    return module.SGD(learning_rate=0.01, momentum=0.9)


def build(sizes, opt=None, input_shape=True):
    """``input_shape=False``: dense82 without one (no weights until its first step)."""
    if STRATEGY is not None:
        with STRATEGY.scope():
            return _build(sizes, opt, input_shape)
    return _build(sizes, opt, input_shape)


def _build(sizes, opt, input_shape):
    if not input_shape:
        model = dense82(input_shape=False)
    elif is_big(sizes):
        model = BIG_MODELS[sizes]()
    else:
        first = ([keras.Input((sizes[0],)), keras.layers.Dense(sizes[1], activation="relu")]
                 if KERAS3 else
                 [keras.layers.Dense(sizes[1], activation="relu", input_shape=(sizes[0],))])
        layers = first + [keras.layers.Dense(n, activation="relu") for n in sizes[2:-1]]
        layers += [keras.layers.Dense(sizes[-1])]
        model = keras.Sequential(layers)
    kwargs = {}
    if ARGS.jit_compile:
        kwargs["jit_compile"] = {"auto": "auto", "true": True, "false": False}[ARGS.jit_compile]
    model.compile(optimizer=opt or optimizer(sizes), loss="mse", **kwargs)
    return model


def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)


#: The "bert" model: BERT-base's encoder block (self-attention with a bias on each of
#: q, k, v and the output, add & LayerNorm, Dense FFN with GELU, add & LayerNorm: 16 weight
#: tensors per block) at width 256 / 4 heads / FFN 1024 instead of 768 / 12 / 3072.
BERT_WIDTH, BERT_HEADS, BERT_FFN, BERT_BLOCKS, BERT_SEQUENCE = 256, 4, 1024, 7, 32


def bert():
    inputs = keras.Input((BERT_SEQUENCE, BERT_WIDTH))
    h = inputs
    for _ in range(BERT_BLOCKS):
        h = keras.layers.LayerNormalization()(keras.layers.Add()([h, attention(h)]))
        ffn = keras.layers.Dense(BERT_FFN, activation=gelu())(h)
        ffn = keras.layers.Dense(BERT_WIDTH)(ffn)
        h = keras.layers.LayerNormalization()(keras.layers.Add()([h, ffn]))
    pooled = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(pooled))


def gelu():
    return "gelu" if KERAS3 or (tf is not None and hasattr(tf.nn, "gelu")) else "relu"


def attention(h):
    if hasattr(keras.layers, "MultiHeadAttention"):
        return keras.layers.MultiHeadAttention(BERT_HEADS, BERT_WIDTH // BERT_HEADS)(h, h)
    # TF 1.15 has no MultiHeadAttention: the same weights (q, k, v, output kernels and
    # biases) and arithmetic from Dense layers and one Lambda.
    q, k, v = [keras.layers.Dense(BERT_WIDTH)(h) for _ in range(3)]

    def heads(t):
        t = tf.reshape(t, (-1, BERT_SEQUENCE, BERT_HEADS, BERT_WIDTH // BERT_HEADS))
        return tf.transpose(t, (0, 2, 1, 3))

    def attend(qkv):
        q_, k_, v_ = [heads(t) for t in qkv]
        scores = tf.matmul(q_, k_, transpose_b=True) / float(BERT_WIDTH // BERT_HEADS) ** 0.5
        out = tf.matmul(tf.nn.softmax(scores), v_)
        return tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (-1, BERT_SEQUENCE, BERT_WIDTH))
    return keras.layers.Dense(BERT_WIDTH)(keras.layers.Lambda(attend)([q, k, v]))


def dense82(input_shape=True):
    layers = [keras.layers.Dense(64, activation="relu") for _ in range(81)]
    layers.append(keras.layers.Dense(64))
    if not input_shape:
        return keras.Sequential(layers)
    if KERAS3:
        return keras.Sequential([keras.Input((64,))] + layers)
    layers[0] = keras.layers.Dense(64, activation="relu", input_shape=(64,))
    return keras.Sequential(layers)


BIG_MODELS = {"resnet50": resnet50, "bert": bert, "dense82": dense82}
#: (input shape, output shape) of a sample, per model.
SHAPES = {"resnet50": ((64, 64, 3), (10,)), "bert": ((BERT_SEQUENCE, BERT_WIDTH), (10,)),
          "dense82": ((64,), (64,))}


def shapes(spec):
    return SHAPES[spec] if is_big(spec) else ((spec[0],), (spec[-1],))


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


def tfa_optimizer(spec=None):
    if tf is None or STRATEGY is not None:
        return None
    try:
        import tensorflow_addons as tfa
    except ImportError:
        return None
    legacy = getattr(tf.keras.optimizers, "legacy", tf.keras.optimizers)
    inner = (legacy.Adam(learning_rate=1e-3) if is_big(spec)
             else legacy.SGD(learning_rate=0.01, momentum=0.9))
    return tfa.optimizers.Lookahead(inner, sync_period=K_STEPS, slow_step_size=ALPHA)


class JaxLoop(object):
    """The peer on JAX: the Keras model's ``stateless_call`` trained by an optax optimizer
    in a plain ``jax.jit`` loop (state donated, as Keras' own jitted step does), with
    ``optax.lookahead`` around it or without (its own plain control). ``fit`` as Keras'."""

    def __init__(self, spec, lookahead):
        import jax
        import jax.numpy as jnp
        import optax
        self.model = model = _build(spec, None, True)
        inner = optax.adam(1e-3) if is_big(spec) else optax.sgd(0.01, momentum=0.9)
        self.lookahead = lookahead
        tx = optax.lookahead(inner, K_STEPS, ALPHA) if lookahead else inner
        # Copies: the step donates its inputs, and init_synced would share fast and slow.
        trainable = [jnp.copy(v.value) for v in model.trainable_variables]
        self.params = (optax.LookaheadParams(trainable, [jnp.copy(t) for t in trainable])
                       if lookahead else trainable)
        self.non_trainable = [jnp.copy(v.value) for v in model.non_trainable_variables]
        self.state = tx.init(self.params)

        def loss_of(fast, non_trainable, x, y):
            predicted, non_trainable = model.stateless_call(fast, non_trainable, x,
                                                            training=True)
            return jnp.mean(jnp.square(predicted - y)), non_trainable

        def step(params, non_trainable, state, x, y):
            fast = params.fast if lookahead else params
            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
                fast, non_trainable, x, y)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), non_trainable, state, loss
        self.step = jax.jit(step, donate_argnums=(0, 1, 2))

    def fit(self, x, y, batch_size, epochs=1, verbose=0, shuffle=False, callbacks=()):
        import jax
        import jax.numpy as jnp
        loss = None
        for i in range(0, len(x), batch_size):
            self.params, self.non_trainable, self.state, loss = self.step(
                self.params, self.non_trainable, self.state,
                jnp.asarray(x[i:i + batch_size]), jnp.asarray(y[i:i + batch_size]))
        jax.block_until_ready(loss)


def timm_lookahead_class():
    """timm's Lookahead (timm/optim/lookahead.py), loaded from its file: ``import timm``
    would import torchvision, which this env does not have (timm installed --no-deps)."""
    import importlib.util
    spec = importlib.util.find_spec("timm")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "optim", "lookahead.py")
    module_spec = importlib.util.spec_from_file_location("timm_lookahead", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.Lookahead


class TorchLoop(object):
    """The peer on PyTorch: the Keras model (a torch Module) in a plain torch loop, with
    torch's optimizer (Adam or SGD with momentum as the model's), wrapped in timm's
    Lookahead or not (its own plain control). ``fit`` as Keras'."""

    def __init__(self, spec, lookahead):
        import torch
        self.model = model = _build(spec, None, True)
        parameters = [v.value for v in model.trainable_variables]
        inner = (torch.optim.Adam(parameters, lr=1e-3) if is_big(spec)
                 else torch.optim.SGD(parameters, lr=0.01, momentum=0.9))
        self.optimizer = timm_lookahead_class()(inner, alpha=ALPHA, k=K_STEPS) \
            if lookahead else inner

    def fit(self, x, y, batch_size, epochs=1, verbose=0, shuffle=False, callbacks=()):
        import torch
        for i in range(0, len(x), batch_size):
            bx = torch.as_tensor(x[i:i + batch_size])
            by = torch.as_tensor(y[i:i + batch_size])
            self.optimizer.zero_grad()
            loss = torch.mean(torch.square(self.model(bx, training=True) - by))
            loss.backward()
            self.optimizer.step()


def has_optax():
    try:
        import optax  # noqa: F401
        return True
    except ImportError:
        return False


def optimizer_form():
    """``lookahead_inject.LookaheadOptimizer`` where this Keras has one (Keras 2 on TF 2
    eager, Keras 3), else None (TF 1.x and graph mode: inject only)."""
    if GRAPH:
        return None
    try:
        return lookahead_inject.LookaheadOptimizer
    except lookahead_inject.UnsupportedEnvironmentError:
        return None


def variants(spec):
    """{name: maker(sizes)} of the variants run on the model ``spec`` (a name or sizes)."""
    out = {"plain": lambda sizes: (build(sizes), [])}

    def injected(sizes, optimizer_state="keep", input_shape=True):
        model = build(sizes, input_shape=input_shape)
        start = time.perf_counter()
        lookahead = lookahead_inject.inject(model, k=K_STEPS, alpha=ALPHA,
                                            optimizer_state=optimizer_state)
        return model, [], time.perf_counter() - start, lookahead
    out["inject"] = injected
    out["inject reset"] = lambda sizes: injected(sizes, "reset")
    out["inject pullback"] = lambda sizes: injected(sizes, "pullback")
    if spec == "dense82":
        # Its weights made by the first step, where they join (a one-time flag).
        out["inject, no input shape"] = lambda sizes: injected(sizes, input_shape=False)
    if GRAPH:
        def blog(sizes):
            model = build(sizes)
            start = time.perf_counter()
            blog_inject(model)
            return model, [], time.perf_counter() - start
        out["blog"] = blog
    form = optimizer_form()
    if form is not None:
        # The same Lookahead compiled in as an optimizer wrapping the plain one.
        out["LookaheadOptimizer"] = lambda sizes: (
            build(sizes, form(optimizer(sizes), k=K_STEPS, alpha=ALPHA)), [])
    out["callback"] = lambda sizes: (build(sizes), [CallbackLookahead()])
    # A control: a second plain model, timed like the variants; its ratio (ideally 1.00)
    # shows how far any ratio of the table can be trusted on this machine.
    out["plain, 2nd instance"] = lambda sizes: (build(sizes), [])
    if not GRAPH and tfa_optimizer() is not None:
        out["tfa"] = lambda sizes: (build(sizes, tfa_optimizer(sizes)), [])
    # Peers in plain loops, each with its own plain control ("... plain"): their row
    # "÷ own plain" is the ratio of the two.
    if NATIVE == "jax" and has_optax():
        out["optax plain"] = lambda sizes: (JaxLoop(sizes, False), [])
        out["optax"] = lambda sizes: (JaxLoop(sizes, True), [])
    if NATIVE == "torch" and timm_lookahead_class() is not None:
        out["timm plain"] = lambda sizes: (TorchLoop(sizes, False), [])
        out["timm"] = lambda sizes: (TorchLoop(sizes, True), [])
    skip = [word for word in ARGS.skip.split(",") if word]
    return {name: make for name, make in out.items()
            if name in ("plain", "inject") or not any(word in name for word in skip)}


#: A peer's own plain control (its ratio is reported over that control's too).
OWN_PLAIN = {"optax": "optax plain", "timm": "timm plain"}


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
    makers = variants(sizes)
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
    in_shape, out_shape = shapes(sizes)
    x = rng.rand(steps * batch, *in_shape).astype("float32")
    y = rng.rand(steps * batch, *out_shape).astype("float32")
    names = list(variants(sizes))
    others = names[1:]
    plain_times, ratios = [], {variant: [] for variant in others}
    setups, firsts = {variant: [] for variant in names}, {variant: [] for variant in names}

    def timed(variant):
        model, callbacks = built[variant][:2]
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
        return (time.perf_counter() - start) / steps

    # A plain model's first step, not recorded: the process's own first trace / compile
    # (imports, kernels loaded once) would otherwise count in the first variant built.
    keras.backend.clear_session()
    build_all(sizes, batch, x, y, ["plain"])
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
    # The first step (trace + compile) of each variant over that of plain built in the same
    # round (of a peer: over its own plain loop's), median over rounds.
    first_ratio = {variant: statistics.median(
        f / p for f, p in zip(firsts[variant], firsts[OWN_PLAIN.get(variant, "plain")]))
        for variant in names}
    own = {variant: ratio[variant] / ratio[OWN_PLAIN[variant]]
           for variant in names if variant in OWN_PLAIN}
    plain = statistics.median(plain_times)
    floor = floor_seconds(built["plain"][0]) / K_STEPS
    return (plain, ratio, setup, first, first_ratio, own, floor,
            memory(built["inject"][0], built["inject"][2]))


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
    for name in ("mode", "strategy", "jit_compile", "models", "skip", "rounds", "repeats"):
        value = getattr(ARGS, name)
        if value and not (name == "models" and value == "mlp,tiny") \
                and not (name in ("rounds", "repeats") and value == 3):
            options += " --{} {}".format(name.replace("_", "-"), value)
    if ARGS.label:
        options += " --label '{}'".format(ARGS.label)
    if NATIVE:
        return "KERAS_BACKEND={} python benchmarks/overhead.py{}".format(NATIVE, options)
    # Beside Keras 3, this variable makes tf.keras the tf-keras the section's title names.
    legacy = "TF_USE_LEGACY_KERAS={} ".format(os.environ["TF_USE_LEGACY_KERAS"]) \
        if os.environ.get("TF_USE_LEGACY_KERAS") else ""
    return legacy + "python benchmarks/overhead.py" + options


def verdict(model_name, variant, ratio, first_ratio):
    """Issue #22's targets for inject on the big models: steady <= 1.05x, first <= 1.25x."""
    if variant != "inject" or not is_big(MODELS[model_name][0]):
        return ""
    missed = [what for what, value, target in (("steady", ratio, 1.05),
                                               ("first step", first_ratio, 1.25))
              if value > target]
    return "**missed: {}**".format(", ".join(missed)) if missed else "met"


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
    if ARGS.models != "mlp,tiny":
        title += ", models " + ARGS.models
    if ARGS.label:
        title += ", " + ARGS.label
    # Other processes share this machine: the 1-minute load average before and after says
    # how busy it was (ratios are paired in time, absolute ms are not comparable across runs).
    load_before = os.getloadavg()[0]
    lines = ["| model | plain ms/step | variant | ratio to plain | ÷ own plain | inject() / setup s | first step s | first step ratio | targets (≤ 1.05, ≤ 1.25) | floor (sync ÷ k) / plain step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for model_name in ARGS.models.split(","):
        sizes, batch, steps = MODELS[model_name]
        plain, ratio, setup, first, first_ratio, own, floor, (trainable, extra) = measure(
            sizes, batch, steps)
        notes.append("{}: inject adds {:,} bytes of variables for {:,} bytes of trainable "
                     "weights ({:.4f}x: one slow copy + the 8-byte step)".format(
                         model_name, extra, trainable, extra / trainable))
        for variant in ratio:
            lines.append("| {} | {:.3f} | {} | {:.2f} | {} | {} | {:.2f} | {:.2f} | {} | {} |".format(
                model_name, plain * 1e3, variant, ratio[variant],
                "{:.2f}".format(own[variant]) if variant in own else "",
                "{:.3f}".format(setup[variant]) if setup.get(variant) is not None else "–",
                first[variant], first_ratio[variant],
                verdict(model_name, variant, ratio[variant], first_ratio[variant]),
                "{:.3f}".format(floor / plain) if variant == "plain" else ""))
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
