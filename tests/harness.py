"""Keras-side helpers of the tests: models, optimizers, the three training APIs.

``keras`` is the Keras the tests build their models with: ``tf.keras``; the
standalone ``keras`` package (2.2 / 2.3 on TF 1.x) when LOOKAHEAD_TEST_KERAS=standalone
(tox sets it in the py37-tf11x-keras2xx envs); or Keras 3 itself (``import keras``)
when it runs on JAX or PyTorch (KERAS_BACKEND=jax / torch, the py311-keras3-* envs),
where TensorFlow is not imported at all and ``tf`` is None. Tests use
``harness.keras``, never ``tf.keras``, so the whole suite runs on models of each;
a test about TensorFlow itself skips through ``skip_without_tensorflow``.
"""

import inspect
import os

import numpy as np

from lookahead_inject import environment, inject
import reference
# The run's constants, data, expectations and asserts are common.py's (TF-free, shared
# with keras3_support.py and the workers), re-exported for the tests.
from common import (BATCH, EPOCHS, N_IN, STEPS, STEPS_PER_EPOCH,  # noqa: F401
                    assert_trajectories_equal, data, epoch_batches, expected, start_weights)

#: (keras version, "jax" / "torch") when Keras 3 runs without TensorFlow, else None.
#: Asked without importing TensorFlow (importing it would also make it a dependency).
KERAS3_WITHOUT_TF = environment.keras3_without_tensorflow()
#: LOOKAHEAD_TEST_KERAS=standalone: models come from `import keras` (Keras 2.2 / 2.3).
STANDALONE = os.environ.get("LOOKAHEAD_TEST_KERAS", "tf.keras") == "standalone"
if KERAS3_WITHOUT_TF:
    tf = None
    import keras
else:
    import tensorflow as tf
    if STANDALONE:
        import keras
    else:
        keras = tf.keras
#: The Keras 3 backend: "tensorflow", "jax", "torch"; None before Keras 3.
KERAS_BACKEND = KERAS3_WITHOUT_TF[1] if KERAS3_WITHOUT_TF else None

ENVIRONMENT = None
GRAPH = False
KERAS_3 = False
#: "keras 2.2.5 (standalone)" in the standalone envs, else None (for skip reasons).
STANDALONE_KERAS = None
#: How the training step runs: a graph train function, a tf.function, a jitted JAX
#: function, torch.compile, or op by op (see configure_mode).
EXECUTIONS = ()
#: PyTorch's "jit" (torch.compile, ~10 s of compiling per model) runs in these modules'
#: tests only: the trajectories against numpy. The Lookahead step itself runs eagerly
#: under torch.compile (torch.compiler.disable), the same code as the plain step that
#: the other modules test; the whole suite with it took the CI subset past 45 minutes.
TORCH_COMPILE_MODULES = ("test_trajectory", "test_keras3_midfit")


def configure_mode(mode):
    global ENVIRONMENT, GRAPH, KERAS_3, EXECUTIONS, STANDALONE_KERAS, KERAS_BACKEND
    if KERAS3_WITHOUT_TF:
        _configure_keras3_without_tf(mode)
        return
    if mode == "graph" and tf.executing_eagerly():
        tf.compat.v1.disable_eager_execution()
    if mode == "eager" and not tf.executing_eagerly():
        raise SystemExit("--tf-mode eager: TF {} runs Keras in graph mode only".format(tf.__version__))
    if tf.executing_eagerly():
        split_cpu_in_two()
    ENVIRONMENT = environment.detect_environment(probe_model() if STANDALONE else None)
    if STANDALONE:
        if ENVIRONMENT.keras != environment.KERAS_STANDALONE:
            raise SystemExit("LOOKAHEAD_TEST_KERAS=standalone, but `import keras` is {} "
                             "here".format(ENVIRONMENT.keras))
        STANDALONE_KERAS = environment.keras_label(ENVIRONMENT.keras, ENVIRONMENT.keras_version)
        # The numpy reference follows the Keras under test's own optimizers.
        reference.OPTIMIZERS.update(reference.STANDALONE_KERAS_OPTIMIZERS)
    GRAPH = ENVIRONMENT.mode == environment.GRAPH
    KERAS_3 = ENVIRONMENT.keras == environment.KERAS_3
    KERAS_BACKEND = ENVIRONMENT.keras_backend
    EXECUTIONS = ("graph",) if GRAPH else ("tf_function", "run_eagerly")


def _configure_keras3_without_tf(mode):
    """Keras 3 on JAX / PyTorch: eager only; its two ways to run a step.

    JAX: compile()'s default is jit_compile=True (the step is one jax.jit function,
    with the model's state passed in and out of it); run_eagerly=True runs the
    same step unjitted. PyTorch: the default (jit_compile="auto" is False there) and
    run_eagerly=True are the same plain step; jit_compile=True wraps the step in
    torch.compile (Keras 3.15.1 backend/torch/trainer.py, torch >= 2.1), which users
    switch on, so it is tested too ("jit"), at ~10 s of compiling per model.
    """
    global ENVIRONMENT, GRAPH, KERAS_3, EXECUTIONS, KERAS_BACKEND
    if mode == "graph":
        raise SystemExit("--tf-mode graph: Keras {} on {} has no graph mode (TensorFlow is "
                         "not used)".format(*KERAS3_WITHOUT_TF))
    ENVIRONMENT = environment.detect_environment()
    GRAPH, KERAS_3, KERAS_BACKEND = False, True, ENVIRONMENT.keras_backend
    EXECUTIONS = ("jit", "run_eagerly")


def without_tensorflow(what):
    """The skip reason for a test of ``what`` (a TensorFlow feature) when Keras 3 runs on
    JAX / PyTorch, else None."""
    if not KERAS3_WITHOUT_TF:
        return None
    return "Keras {} ({} backend): {} (TensorFlow is not used)".format(
        KERAS3_WITHOUT_TF[0], KERAS3_WITHOUT_TF[1], what)


def skip_without_tensorflow(what):
    """Skip the calling test when Keras 3 runs on JAX / PyTorch: it is about ``what``,
    which only TensorFlow has, e.g. "no tf.distribute"."""
    import pytest
    if KERAS3_WITHOUT_TF:
        pytest.skip(without_tensorflow(what))


def needs_tensorflow(what):
    """``skip_without_tensorflow`` as a mark, for a module's ``pytestmark`` or a test."""
    import pytest
    return pytest.mark.skipif(bool(KERAS3_WITHOUT_TF), reason=str(without_tensorflow(what)))


def probe_model():
    """A small uncompiled model of the Keras under test, for detect()."""
    return keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])


def _clears_freeing_memory():
    """Whether this Keras's ``clear_session`` takes ``free_memory`` (Keras 3)."""
    try:
        return "free_memory" in inspect.signature(keras.backend.clear_session).parameters
    except (TypeError, ValueError):
        return False


_CLEARS_FREEING_MEMORY = _clears_freeing_memory()


def fresh_session():
    """A fresh graph and Keras session for each test.

    Standalone Keras races with itself when the session runs ops on several
    threads: Keras 2.2's ref variables are read while its own updates write them
    (plain SGD misses the numpy reference now and then), and the Adam of 2.2 and
    2.3 reads ``iterations`` unordered with its increment (2.3.1 on TF 1.15: the
    bias correction of step n uses t = n or n + 1 from run to run). Their
    sessions get one thread; the Lookahead ops are ordered after every update.
    """
    if _CLEARS_FREEING_MEMORY:
        # Keras 3's clear_session runs a full gc.collect() unless told not to: ~2 s per
        # test late in a Keras 3 on TF 2.21 run (its update-rule tests read 2.3 s each,
        # skipped or not): that env took 1817 s in CI with it, 797 s without. Python's own
        # collector still runs.
        keras.backend.clear_session(free_memory=False)
    else:
        keras.backend.clear_session()
    if STANDALONE:
        # Per session: otherwise the first session of the process (any Keras's) fixes
        # the inter-op pool for all later ones.
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                          inter_op_parallelism_threads=1,
                                          use_per_session_threads=True)
        keras.backend.set_session(tf.compat.v1.Session(config=config))


def skip_standalone(why):
    """Skip the calling test in the standalone-Keras envs, naming the Keras and why."""
    import pytest
    if STANDALONE:
        pytest.skip("{} {}".format(STANDALONE_KERAS, why))


def split_cpu_in_two():
    """Two logical CPU devices, for MirroredStrategy tests; must run before TF uses a device.
    Ops without a strategy still run on /cpu:0."""
    config = tf.config if hasattr(tf.config, "set_logical_device_configuration") else tf.config.experimental
    cpu = (getattr(tf.config, "list_physical_devices", None)
           or tf.config.experimental.list_physical_devices)("CPU")[0]
    setter = getattr(config, "set_logical_device_configuration", None) or \
        tf.config.experimental.set_virtual_device_configuration      # TF 2.0-2.2
    device = getattr(config, "LogicalDeviceConfiguration", None) or \
        tf.config.experimental.VirtualDeviceConfiguration
    setter(cpu, [device(), device()])


def optimizer(name, legacy=False):
    """A fresh Keras optimizer matching reference.OPTIMIZERS[name]; with ``legacy``, from
    ``keras.optimizers.legacy`` where it exists (TF 2.11+; tfa's Lookahead wraps those)."""
    # TF >= 2.11 graph mode needs the legacy optimizers (the new ones have no get_updates).
    module = keras.optimizers
    if (GRAPH or legacy) and hasattr(module, "legacy"):
        module = module.legacy
    if STANDALONE:
        # Keras 2.2 knows only lr=; 2.3 takes both.
        return {
            "sgd": lambda: gradients_first(module.SGD)(lr=0.1),
            "momentum": lambda: gradients_first(module.SGD)(lr=0.05, momentum=0.9),
            "adam": lambda: gradients_first(module.Adam)(lr=0.01),
        }[name]()
    return {
        "sgd": lambda: module.SGD(learning_rate=0.1),
        "momentum": lambda: module.SGD(learning_rate=0.05, momentum=0.9),
        "adam": lambda: module.Adam(learning_rate=0.01),
    }[name]()


def gradients_first(optimizer_class):
    """``optimizer_class`` with every gradient computed before any weight update.

    Standalone Keras races with itself: its updates (``K.update(p, ...)``) are not
    ordered after the gradient ops that read ``p`` (a TF1 ref variable in Keras 2.2),
    so a backward pass may read a weight its own step already moved, depending on
    the op order the executor picks (two identical Keras 2.2.5 models trained side by
    side differ by up to 1e-2, without Lookahead, even at one session thread). The
    tests compare step by step, so their optimizers wait for all gradients; the
    arithmetic is Keras's own. (Lookahead's sync runs after every update.)
    """
    class GradientsFirst(optimizer_class):
        def get_gradients(self, loss, params):
            grads = super(GradientsFirst, self).get_gradients(loss, params)
            tensors = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads]
            with tf.control_dependencies(tensors):
                return [tf.IndexedSlices(tf.identity(g.values), g.indices, g.dense_shape)
                        if isinstance(g, tf.IndexedSlices) else tf.identity(g) for g in grads]
    GradientsFirst.__name__ = optimizer_class.__name__
    return GradientsFirst


def twin_safe(opt):
    """The optimizer for tests that compare two Keras models trained side by side.

    The Adam of standalone Keras 2.2 / 2.3 reads ``iterations`` unordered with its
    own increment (see reference.STANDALONE_KERAS_OPTIMIZERS): each model's graph
    picks its own order, so two models may correct step n with t = n and t = n + 1.
    Those tests use momentum there; Adam is checked against numpy (test_trajectory).
    """
    return "momentum" if STANDALONE and opt == "adam" else opt


def compile_kwargs(execution):
    """compile() arguments for an ``execution`` of EXECUTIONS (TF 1 has no run_eagerly)."""
    if execution == "run_eagerly":
        return {"run_eagerly": True}
    if execution == "jit":
        return {"jit_compile": True}
    return {}


def mlp(opt="sgd", weights=None, execution=None, **compile_kwargs_):
    """Dense(8, tanh) -> Dense(1), compiled with MSE, weights set to ``weights``."""
    model = keras.Sequential([
        keras.layers.Dense(8, activation="tanh", input_shape=(N_IN,)),
        keras.layers.Dense(1),
    ])
    compile_kwargs_.update(compile_kwargs(execution))
    model.compile(optimizer=optimizer(opt) if isinstance(opt, str) else opt, loss="mse",
                  **compile_kwargs_)
    if weights is not None:
        model.set_weights([np.asarray(w, "float32") for w in weights])
    return model


def h5_path(folder, stem):
    """An .h5 weights path every Keras takes: Keras 3 demands ".weights.h5", while
    Keras 2.13+ reads that suffix as its new format, which fails in graph mode."""
    import os
    return os.path.join(str(folder), stem + (".weights.h5" if KERAS_3 else ".h5"))


class RecordWeights(keras.callbacks.Callback):
    def __init__(self):
        super(RecordWeights, self).__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self.model.get_weights())

    if STANDALONE:
        on_batch_end = on_train_batch_end     # Keras 2.2 calls only on_batch_end


def _generator(x, y):
    while True:
        for i in range(0, len(x), BATCH):
            yield x[i:i + BATCH], y[i:i + BATCH]


def train(model, api, x, y, epochs=EPOCHS):
    """Train with ``api``; returns model.get_weights() after every step."""
    if api == "train_on_batch":
        out = []
        for bx, by in epoch_batches(x, y, epochs):
            model.train_on_batch(bx, by)
            out.append(model.get_weights())
        return out
    recorder = RecordWeights()
    if api == "fit":
        model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[recorder])
    elif api == "fit_generator":
        fit = getattr(model, "fit_generator", None) if not KERAS_3 else None
        # Keras 3 has no fit_generator; its fit takes the generator itself.
        (fit or model.fit)(_generator(x, y), steps_per_epoch=len(x) // BATCH, epochs=epochs,
                           verbose=0, callbacks=[recorder])
    else:
        raise ValueError(api)
    return recorder.weights


APIS = ("train_on_batch", "fit", "fit_generator")


def get_values(variables):
    """Numpy copies of variables, the way this TF/mode allows."""
    if GRAPH:
        return keras.backend.batch_get_value(list(variables))
    return [np.array(v.numpy()) for v in variables]


def set_values(variables, values):
    """Write numpy values into variables, the way this TF/mode allows."""
    if GRAPH:
        keras.backend.batch_set_value(list(zip(variables, values)))
    else:
        for variable, value in zip(variables, values):
            variable.assign(value)


def keras_lookahead_reference(model, steps, k, alpha):
    """Plain Keras training plus Lookahead done by hand with get/set of the weights.

    ``steps`` is a list of callables ``step(model) -> outputs``, each one plain
    training step. Returns (weights after each step, outputs of each step).
    """
    slow, weights, outputs = None, [], []
    for i, step in enumerate(steps, 1):
        fast_vars = model.trainable_weights
        if slow is None:
            slow = get_values(fast_vars)
        outputs.append(step(model))
        if i % k == 0:
            fast = get_values(fast_vars)
            slow = [s + alpha * (f - s) for s, f in zip(slow, fast)]
            set_values(fast_vars, slow)
        weights.append(model.get_weights())
    return weights, outputs


def twin_models(build):
    """Two identically initialised copies of ``build()``: one to inject, one reference."""
    first = build()
    second = build()
    second.set_weights(first.get_weights())
    return first, second


def assert_matches_hand_lookahead(build, steps, k, alpha):
    """``build()`` injected trains as its twin trained plainly with Lookahead by hand
    (``keras_lookahead_reference``): weights and the steps' outputs."""
    model, reference_model = twin_models(build)
    inject(model, k=k, alpha=alpha)
    want, want_outputs = keras_lookahead_reference(reference_model, steps, k, alpha)
    got_outputs, got = [], []
    for step in steps:
        got_outputs.append(step(model))
        got.append(model.get_weights())
    assert_trajectories_equal(got, want)
    np.testing.assert_allclose(np.array(got_outputs, np.float64),
                               np.array(want_outputs, np.float64), atol=1e-5)


def trained(opt="sgd", steps=4, k=3, alpha=0.5, execution=None):
    """A model injected with Lookahead(k, alpha) and trained ``steps`` steps; (model, handle)."""
    x, y = data()
    model = mlp(opt, start_weights(), execution)
    la = inject(model, k=k, alpha=alpha)
    for bx, by in epoch_batches(x, y)[:steps]:
        model.train_on_batch(bx, by)
    return model, la


class HandLookahead(keras.callbacks.Callback):
    """Reference for fit(): Lookahead done by hand with get/set of the weights after
    every batch (valid only while callbacks see every step: steps_per_execution=1)."""

    def __init__(self, k, alpha):
        super(HandLookahead, self).__init__()
        self.k, self.alpha, self.step, self.slow = k, alpha, 0, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.slow is None:
            self.slow = get_values(self.model.trainable_weights)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.k == 0:
            fast = get_values(self.model.trainable_weights)
            self.slow = [s + self.alpha * (f - s) for s, f in zip(self.slow, fast)]
            set_values(self.model.trainable_weights, self.slow)

    if STANDALONE:
        on_batch_begin, on_batch_end = on_train_batch_begin, on_train_batch_end


def has_steps_per_execution():
    """steps_per_execution is a compile() argument from TF 2.4 (Keras 2) and in Keras 3,
    where the PyTorch backend refuses any value but 1."""
    if KERAS3_WITHOUT_TF:
        return KERAS_BACKEND == "jax"
    return not GRAPH and ENVIRONMENT.tf_version.release >= (2, 4)


def tf_older_than(*release):
    """True on a TensorFlow older than ``release`` (never without TensorFlow)."""
    version = ENVIRONMENT.tf_version
    return version is not None and version.release[:len(release)] < release


def tf_is(*release):
    """True on TensorFlow ``release`` (e.g. (2, 15)); never without TensorFlow."""
    version = ENVIRONMENT.tf_version
    return version is not None and version.release[:len(release)] == release


def constant(value, dtype=None):
    """``value`` as a tensor of this Keras (what an initializer returns)."""
    value = np.asarray(value)
    if tf is not None:
        return tf.constant(value, dtype=dtype or "float32")
    return keras.ops.convert_to_tensor(value, dtype=dtype or "float32")


def custom_train_step_model(layers_):
    """A Sequential of ``layers_`` whose own train_step computes MSE's gradients and calls
    the optimizer itself, the way each backend's Keras guide writes it."""
    # One class name for all: the model's name (and a TF name scope) derives from it.
    return OwnStep(layers_)


if tf is not None:
    class OwnStep(keras.Sequential):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self(x, training=True) - y))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            return {"loss": loss}
elif KERAS_BACKEND == "jax":
    class OwnStep(keras.Sequential):
        # JAX: a stateless step; the state goes in and out, the optimizer's through
        # stateless_apply (Keras 3's "custom train_step in JAX" guide).
        def train_step(self, state, data):
            import jax
            import jax.numpy as jnp
            trainable, non_trainable, optimizer_variables, metrics_variables = state
            x, y = data

            def loss_of(trainable_):
                predicted, non_trainable_ = self.stateless_call(trainable_, non_trainable, x,
                                                                training=True)
                return jnp.mean(jnp.square(predicted - y)), non_trainable_
            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
            trainable, optimizer_variables = self.optimizer.stateless_apply(
                optimizer_variables, grads, trainable)
            return {"loss": loss}, (trainable, non_trainable, optimizer_variables,
                                    metrics_variables)
elif KERAS_BACKEND == "torch":
    class OwnStep(keras.Sequential):
        # PyTorch: loss.backward() fills each weight's .grad (Keras 3's "custom
        # train_step in PyTorch" guide).
        def train_step(self, data):
            import torch
            x, y = data
            self.zero_grad()
            loss = torch.mean(torch.square(self(x, training=True) - y))
            loss.backward()
            weights = self.trainable_weights
            with torch.no_grad():
                self.optimizer.apply([w.value.grad for w in weights], weights)
            return {"loss": loss}


def learning_rate(model):
    optimizer = model.optimizer
    # Keras 2.2 names it lr only.
    rate = optimizer.learning_rate if hasattr(optimizer, "learning_rate") else optimizer.lr
    return float(get_values([rate])[0])


def resume_in_fresh_processes(fmt, opt, folder, optimizer_state="keep", model="built"):
    """Train, save, and resume in fresh processes: workers/resume_worker.py's two phases
    (its docstring says what each does; ``model`` "unbuilt": a Sequential without an
    input shape)."""
    import subprocess
    import sys
    from common import WORKERS
    mode = "graph" if GRAPH else "eager"
    for phase in ("first", "second"):
        subprocess.run([sys.executable, os.path.join(WORKERS, "resume_worker.py"), mode, fmt, opt,
                        phase, str(folder), optimizer_state, model],
                       cwd=os.path.dirname(os.path.abspath(__file__)), check=True, timeout=300)


def resumed_weights(folder):
    """(the resumed run's final weights, its Lookahead step), as resume_worker.py wrote them."""
    with np.load(os.path.join(str(folder), "final.npz")) as final:
        return [final["arr_{}".format(i)] for i in range(4)], int(final["step"])
