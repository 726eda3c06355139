"""A training step that does not sync does work independent of the number of weights
(issue #22): what it adds over plain training is counted, not timed, on a stack of 10
and of 40 Dense layers (20 and 80 weight tensors, Adam), and must be the same at both
depths. Each backend counts what its step is made of:

- TF graph mode (TF 1.x, TF 2 with --tf-mode graph): the graph ops the train function's
  fetches (outputs and updates) depend on; and the nodes a session run of it executes
  (its partition graphs, after TF's own rewrites: a functional Case / If op is lowered
  there to a Switch per input with both branches' ops inlined, which run dead on every
  step that does not take them).
- TF 2 eager, tf-keras, Keras 3 on TF: the ops of the graph ``tf.function`` traces from
  ``model.train_step`` (what ``fit``'s train function runs), top level only (a branch's
  body is a function of its own); and the nodes a call of it executes (its partition
  graphs, as in graph mode).
- Keras 3 on JAX: the instructions of the entry computation of the step ``fit`` compiles
  and the bytes its copy instructions write, from XLA's dump (as
  tests/test_jax_step_copies.py; a loop's body runs only when it syncs); and with
  ``run_eagerly=True``, the XLA compilations a step triggers once warm (none, as plain).
- Keras 3 on PyTorch: the torch ops dispatched, and the Python calls made, by one
  ``train_on_batch`` that does not sync.

The executed-node counts leave out the nodes that only hand a graph its inputs. In a
graph the sync's branch finds the weights and slow copies by name, so the step takes none
of them as input. In a traced TF 2 step it finds the slow copies by name
(``common.named_variables``) and takes the weights, which Keras makes anonymous, as inputs
of its branch ops: the plain step captures them already, so its op count adds none per
weight, though each branch op still hands one ``_Arg`` per weight to the branch it calls.

On TF 2 eager (Keras 2, tf-keras, Keras 3 on TF) the traced step is also counted with
Lookahead compiled in as the optimizer (``LookaheadOptimizer``), whose slow copies are
named too.

Each count is taken at a step that does not sync (k=5; the step after the first, which
takes the slow copies).
"""

import collections
import os
import sys

import numpy as np
import pytest

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))

import lookahead_inject  # noqa: E402

SHALLOW, DEEP = 10, 40
WIDTH, BATCH = 8, 16
K, ALPHA = 5, 0.5


#: Lookahead compiled in as the optimizer (``LookaheadOptimizer`` around the same Adam) for
#: ``model``'s ``injected``, beside True (``inject`` after compile) and False (plain).
OPTIMIZER_FORM = "LookaheadOptimizer"


def dense_stack(depth, run_eagerly=False, input_shape=True, optimizer=None):
    """``depth`` Dense layers; without ``input_shape`` no weights until the first step."""
    keras = harness.keras
    if not input_shape:
        layers = [keras.layers.Dense(WIDTH) for _ in range(depth)]
    elif harness.KERAS_3:
        layers = [keras.Input((WIDTH,))] + [keras.layers.Dense(WIDTH) for _ in range(depth)]
    else:
        layers = [keras.layers.Dense(WIDTH, input_shape=(WIDTH,))] + [
            keras.layers.Dense(WIDTH) for _ in range(depth - 1)]
    model = keras.Sequential(layers)
    # Standalone Keras 2.2's compile takes no run_eagerly.
    model.compile(optimizer=optimizer or harness.optimizer("adam"), loss="mse",
                  **({"run_eagerly": True} if run_eagerly else {}))
    return model


def batch():
    rng = np.random.RandomState(0)
    return (rng.rand(BATCH, WIDTH).astype("float32"), rng.rand(BATCH, WIDTH).astype("float32"))


def model(depth, injected, run_eagerly=False, input_shape=True):
    harness.fresh_session()
    optimizer = None
    if injected == OPTIMIZER_FORM:
        optimizer = lookahead_inject.LookaheadOptimizer(harness.optimizer("adam"), k=K,
                                                        alpha=ALPHA)
    built = dense_stack(depth, run_eagerly, input_shape, optimizer)
    if injected is True:
        lookahead_inject.inject(built, k=K, alpha=ALPHA)
    return built


def added(count, form=True):
    """{depth: count(Lookahead added as ``form``) - count(plain)}, with the counts (the
    injected ones under True), for the failure message."""
    counts = {(depth, bool(injected)): count(depth, injected)
              for depth in (SHALLOW, DEEP) for injected in (False, form)}
    return {depth: _difference(counts[depth, True], counts[depth, False])
            for depth in (SHALLOW, DEEP)}, counts


def _difference(injected, plain):
    if isinstance(injected, collections.Counter):
        return sum(injected.values()) - sum(plain.values())
    return injected - plain


def explain(counts):
    """What the injected step adds at each depth, by kind (op type, opcode), for a reader."""
    lines = []
    for depth in (SHALLOW, DEEP):
        plain, injected = counts[depth, False], counts[depth, True]
        if isinstance(plain, collections.Counter):
            extra = injected.copy()
            extra.subtract(plain)
            extra = {kind: n for kind, n in sorted(extra.items()) if n}
            lines.append("{} layers: plain {}, injected {}, added by kind {}".format(
                depth, sum(plain.values()), sum(injected.values()), extra))
        else:
            lines.append("{} layers: plain {}, injected {}".format(depth, plain, injected))
    return "; ".join(lines)


# -- inject itself ----------------------------------------------------------------


def weights_reads_by_inject(depth, injected):
    """How often ``inject`` reads the model's ``weights`` (0 for the plain model, which is
    not injected). Keras' ``weights`` walks every layer, so a read per weight tensor makes
    ``inject`` quadratic in their number."""
    if not injected:
        return 0
    built = model(depth, injected=False)
    cls = type(built)
    own, weights = vars(cls).get("weights"), cls.weights
    reads = []

    def counted(self):
        if self is built:
            reads.append(1)
        return weights.fget(self)
    cls.weights = property(counted)
    try:
        lookahead_inject.inject(built, k=K, alpha=ALPHA)
    finally:
        if own is None:
            del cls.weights         # inherited again
        else:
            cls.weights = own
    return len(reads)


def test_inject_reads_the_models_weights_as_often_at_40_layers_as_at_10():
    extra, counts = added(weights_reads_by_inject)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


# -- TensorFlow -------------------------------------------------------------------


#: What hands a graph its inputs (a variable's handle, a function's argument) and does no work.
INPUT_NODES = ("_Arg", "VarHandleOp")


def needs_tensorflow_step(graph):
    if harness.KERAS3_WITHOUT_TF:
        return pytest.mark.skipif(True, reason=str(harness.without_tensorflow("no TF graph")))
    if not graph and not harness.GRAPH and not hasattr(harness.keras.Model, "train_step"):
        return pytest.mark.skip(
            reason="Keras of TF {} has no Model.train_step (TF < 2.2) to trace as "
                   "fit does".format(harness.tf.__version__))
    return pytest.mark.skipif(
        harness.GRAPH != graph,
        reason="the {} step exists with --tf-mode {} (TF {} runs {} here)".format(
            "graph train function's" if graph else "tf.function's",
            "graph" if graph else "eager", harness.tf.__version__,
            "graph mode" if harness.GRAPH else "eagerly"))


def graph_step_ops(depth, injected):
    """Op types of the ops a session run of the graph train function executes."""
    built = model(depth, injected)
    built._make_train_function()
    function = built.train_function
    fetches = [t.op if hasattr(t, "op") else t
               for t in list(function.outputs) + [function.updates_op]
               + list(getattr(function, "fetches", []))]
    seen, todo = {}, list(fetches)
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op.type
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return collections.Counter(seen.values())


def traced_step_ops(depth, injected, input_shape=True):
    """Op types of the graph tf.function traces from ``train_step`` after one fit step
    (optimizer built, slow copies taken): the step fit runs from then on."""
    tf = harness.tf
    built = model(depth, injected, input_shape=input_shape)
    x, y = batch()
    built.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    spec = tf.TensorSpec((BATCH, WIDTH), tf.float32)
    graph = tf.function(built.train_step).get_concrete_function((spec, spec)).graph
    return collections.Counter(op.type for op in graph.get_operations())


def partition_nodes(run_metadata):
    return collections.Counter(node.op for graph in run_metadata.partition_graphs
                               for node in graph.node)


def graph_step_executed(depth, injected):
    """Op types of the nodes a session run of the graph train function executes, at the
    second step (the first takes the slow copies), from the session's partition graphs."""
    tf, keras = harness.tf, harness.keras
    built = model(depth, injected)
    x, y = batch()
    built.train_on_batch(x, y)
    function = built.train_function
    data = [x, y, np.ones(BATCH, "float32")]
    feeds = {}
    for placeholder in function.inputs:
        feeds[placeholder] = (True if "learning_phase" in placeholder.name else data.pop(0))
    metadata = tf.compat.v1.RunMetadata()
    session = getattr(keras.backend, "get_session", None) or tf.compat.v1.keras.backend.get_session
    session().run(list(function.outputs) + [function.updates_op], feeds,
                  options=tf.compat.v1.RunOptions(output_partition_graphs=True),
                  run_metadata=metadata)
    return partition_nodes(metadata)


def working(count):
    """``count`` (nodes by op type) as a function of (depth, injected), without the nodes
    that only hand the graph its inputs."""
    def counted(depth, injected):
        return collections.Counter({kind: n for kind, n in count(depth, injected).items()
                                    if kind not in INPUT_NODES})
    return counted


def traced_step_executed(depth, injected):
    """Op types of the nodes one call of the ``train_step`` tf.function executes, at the
    second step (the first, by fit, built the optimizer and took the slow copies), from
    the partition graphs TF reports for the function's first run."""
    tf = harness.tf
    from tensorflow.python.eager import context
    built = model(depth, injected)
    x, y = batch()
    built.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    step = tf.function(built.train_step)
    data = (tf.constant(x), tf.constant(y))
    step.get_concrete_function(data)
    context.context().enable_run_metadata()
    try:
        # What was recorded before (the eager ops of fit and inject) is dropped.
        context.context().export_run_metadata()
        step(data)
        metadata = context.context().export_run_metadata()
    finally:
        context.context().disable_run_metadata()
    counts = collections.Counter()
    for function in metadata.function_graphs:
        counts.update(partition_nodes(function))
    return counts


@needs_tensorflow_step(graph=True)
def test_a_graph_train_function_that_does_not_sync_has_as_many_ops_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(graph_step_ops)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_tensorflow_step(graph=True)
def test_a_graph_train_function_that_does_not_sync_executes_as_many_working_nodes_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(working(graph_step_executed))
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_tensorflow_step(graph=False)
def test_a_traced_tf_step_that_does_not_sync_executes_as_many_working_nodes_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(working(traced_step_executed))
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_tensorflow_step(graph=False)
def test_a_traced_tf_step_that_does_not_sync_has_as_many_ops_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(traced_step_ops)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_tensorflow_step(graph=False)
def test_a_traced_tf_step_of_the_lookahead_optimizer_that_does_not_sync_has_as_many_ops_more_than_plain_at_40_layers_as_at_10():
    # Its slow copies are the optimizer's variables (Keras 2's slots, Keras 3's
    # add_variable_from_reference), made named as inject's are.
    extra, counts = added(traced_step_ops, OPTIMIZER_FORM)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_tensorflow_step(graph=False)
def test_a_traced_tf_step_of_the_lookahead_optimizer_that_does_not_sync_executes_as_many_working_nodes_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(working(traced_step_executed), OPTIMIZER_FORM)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


#: The op types of TF's branch ops (tf.switch_case, tf.cond): each takes every variable its
#: branches use as an input, at every step, run or not.
BRANCH_OPS = ("Case", "StatelessCase", "If", "StatelessIf")


@needs_tensorflow_step(graph=False)
def test_a_traced_tf_step_of_a_model_without_weights_at_inject_has_the_branch_ops_of_a_built_ones():
    # The weights such a model builds join at its first step (one-time flag) in the same
    # op as the start's step-0 copy, not in a branch op of their own with every weight
    # and slow copy as inputs once more.
    branches = {}
    for input_shape in (True, False):
        ops = traced_step_ops(SHALLOW, True, input_shape=input_shape)
        branches[input_shape] = sum(ops[kind] for kind in BRANCH_OPS)
    assert branches[False] == branches[True] == 2, branches


# -- JAX --------------------------------------------------------------------------

needs_jax = pytest.mark.skipif(
    harness.KERAS_BACKEND != "jax",
    reason="an XLA dump of the jitted train step exists on Keras 3's JAX backend only "
           "(Keras backend here: {})".format(harness.KERAS_BACKEND))

JAX_FIT = """
import numpy as np, keras
from lookahead_inject import inject
x = np.random.rand({batch}, {width}).astype("float32")
model = keras.Sequential([keras.Input(({width},))]
                         + [keras.layers.Dense({width}) for _ in range({depth})])
model.compile(keras.optimizers.Adam(0.01), "mse")
if {injected}:
    inject(model, k={k}, alpha={alpha})
model.fit(x, x, batch_size={batch}, epochs=2, verbose=0)
"""

_jax_modules = {}


def jax_step_module(depth, injected):
    import jax_step_copies
    key = (depth, injected)
    if key not in _jax_modules:
        _jax_modules[key] = jax_step_copies.step_module(JAX_FIT.format(
            batch=BATCH, width=WIDTH, depth=depth, injected=injected, k=K, alpha=ALPHA))
    return _jax_modules[key]


def jax_bytes_copied(depth, injected):
    import jax_step_copies
    return jax_step_copies.bytes_copied(jax_step_module(depth, injected))


def jax_working_instructions(depth, injected):
    """Opcodes of the entry computation's instructions that do work (not a parameter, a
    tuple's packing or unpacking, a bitcast or a constant)."""
    import jax_step_copies
    return collections.Counter(code for code in jax_step_copies.entry_opcodes(
        jax_step_module(depth, injected)) if code not in jax_step_copies.BOOKKEEPING)


@needs_jax
def test_a_jitted_step_that_does_not_sync_copies_as_many_bytes_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(jax_bytes_copied)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_jax
def test_a_jitted_step_that_does_not_sync_has_as_many_working_instructions_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(jax_working_instructions)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


class JaxCompiles(object):
    """XLA compilations JAX reports (its monitoring events) inside the block."""

    #: The counter whose block runs (JAX offers no way to remove a listener, so one
    #: listener, registered at the first block, serves them all).
    _counting = None
    _listening = False

    def __init__(self):
        self.count = 0

    @staticmethod
    def _heard(event, duration, **kwargs):
        if JaxCompiles._counting is not None \
                and event == "/jax/core/compile/backend_compile_duration":
            JaxCompiles._counting.count += 1

    def __enter__(self):
        if not JaxCompiles._listening:
            import jax
            jax.monitoring.register_event_duration_secs_listener(JaxCompiles._heard)
            JaxCompiles._listening = True
        JaxCompiles._counting = self
        return self

    def __exit__(self, *exc):
        JaxCompiles._counting = None


def jax_eager_compiles(injected):
    """Compilations in steps 8-10 of a run_eagerly model (k=5: after a sync has run once,
    two steps that do not sync and one that does)."""
    built = model(SHALLOW, injected, run_eagerly=True)
    x, y = batch()
    for _ in range(2 * K - 3):
        built.train_on_batch(x, y)
    with JaxCompiles() as compiles:
        for _ in range(3):
            built.train_on_batch(x, y)
    return compiles.count


@needs_jax
def test_a_run_eagerly_jax_step_compiles_nothing_once_plain_training_compiles_nothing():
    plain, injected = jax_eager_compiles(False), jax_eager_compiles(True)
    assert plain == 0, "plain run_eagerly steps compiled {} times".format(plain)
    assert injected == 0, "injected run_eagerly steps compiled {} times".format(injected)


# -- PyTorch ----------------------------------------------------------------------

needs_torch = pytest.mark.skipif(
    harness.KERAS_BACKEND != "torch",
    reason="Keras 3's PyTorch step dispatches torch ops from Python on its PyTorch "
           "backend only (Keras backend here: {})".format(harness.KERAS_BACKEND))


def second_step(depth, injected, counting):
    """``counting`` (a context manager with a ``count``) around the second train_on_batch
    (the first takes the slow copies; with k=5 the second does not sync)."""
    built = model(depth, injected)
    x, y = batch()
    built.train_on_batch(x, y)
    with counting as counter:
        built.train_on_batch(x, y)
    return counter.count


def torch_ops(depth, injected):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Dispatched(TorchDispatchMode):
        def __init__(self):
            super(Dispatched, self).__init__()
            self.count = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count[str(func.overloadpacket.__name__)] += 1
            return func(*args, **(kwargs or {}))
    return second_step(depth, injected, Dispatched())


class PythonCalls(object):
    """Python function calls (not C functions) made inside the block, by function name."""

    def __init__(self):
        self.count = collections.Counter()

    def __enter__(self):
        def profile(frame, event, arg):
            if event == "call":
                self.count[frame.f_code.co_name] += 1
        sys.setprofile(profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def python_calls(depth, injected):
    return second_step(depth, injected, PythonCalls())


@needs_torch
def test_a_torch_step_that_does_not_sync_dispatches_as_many_torch_ops_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(torch_ops)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)


@needs_torch
def test_a_torch_step_that_does_not_sync_makes_as_many_python_calls_more_than_plain_at_40_layers_as_at_10():
    extra, counts = added(python_calls)
    assert extra[DEEP] == extra[SHALLOW], explain(counts)
