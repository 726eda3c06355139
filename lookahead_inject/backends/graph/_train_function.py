"""What the graph-mode backends (tf114, tf115, tf2_graph) share.

Each of them rebuilds ``model.train_function`` the way its TF version's
``Model._make_train_function`` does (the blog's approach), with the Lookahead
ops appended to the same ``K.function``: one session run per step, no Python
counter, no extra session call per step. The per-version builder is the only thing a
graph backend module holds; this module installs it so that every later rebuild
by Keras (``compile()`` resets ``train_function`` to None in every version; the
sample-weight mode change rebuilds it too) goes through it again.
"""

import importlib

import numpy as np
import tensorflow as tf

from ...errors import ModelNotReadyError
from .. import Backend
from ..common import estimator, h5_files, horovod, optimizer_slots, tf_checkpoint
from ..common.attachment import Attachment, all_or_nothing, follow_compile, trainable_weights
from ..common.tf_checkpoint import Checkpointed, CheckpointedStore
from ..common.tf_sync import LookaheadVariables, slow_name
from ._loss_scale import sync_inside_applied_step

#: Checkpoint formats that carry the Lookahead state by themselves in tf.keras' graph mode.
CHECKPOINT_FORMATS = (tf_checkpoint.TF_WEIGHTS, h5_files.FORMAT)


def engine_backend(model):
    """The Keras backend module the model's own engine imports.

    The blog used the public ``tf.keras.backend``, which lacks
    ``symbolic_learning_phase`` and ``get_graph`` in every TF from 1.14 to
    2.21, and from TF 2.6 on ``tensorflow.python.keras.backend`` is a stale copy
    with a graph and session of its own. The engine's sibling ``backend`` module
    is the one that shares the model's graph and session.
    """
    for cls in type(model).__mro__:
        package, sep, _ = cls.__module__.partition(".engine.")
        if sep:
            return importlib.import_module(package + ".backend")
    raise ModelNotReadyError(
        "{} is not a Keras model from tf.keras (no Keras engine class in its "
        "bases). inject() takes a compiled tf.keras Model.".format(type(model).__name__))


def keras_graph(K):
    """The graph Keras builds its models in."""
    # Standalone Keras 2.2 / 2.3 have no K.get_graph: they build in TF's default graph.
    get_graph = getattr(K, "get_graph", None)
    return get_graph() if get_graph else tf.compat.v1.get_default_graph()


class GraphStore(CheckpointedStore):
    """Slow copies as Keras variables of the model's graph; values moved by session runs.

    Slow copies start as zeros, not as ``K.variable(p)``: the blog's initial
    value read ``p`` in the same initializer run as ``p``'s own
    (FailedPreconditionError on a fresh TF1 model) and froze the values at
    inject time. ``LookaheadVariables.prepare`` fills them from the fast weights
    when the train function that first trains them is built, right before its
    first step.
    """

    def __init__(self, K, graph, checkpointed):
        super().__init__(checkpointed)
        self.K, self.graph = K, graph
        self._ops = {}

    def make_slow(self, weight, kind="slow"):
        with self.graph.as_default():
            slow = self.K.variable(np.zeros(_shape(weight), weight.dtype.base_dtype.as_numpy_dtype),
                                   dtype=weight.dtype.base_dtype, name=slow_name(weight, kind))
        self.checkpointed.add(weight, slow, kind)
        return slow

    @staticmethod
    def tf_variable(weight):
        return weight

    def read(self, variables):
        return self.K.batch_get_value(list(variables))

    def write(self, variables, values):
        self.K.batch_set_value(list(zip(variables, values)))

    def run(self, key, build):
        # Built once per key and kept: a graph grows with every op added to it.
        if key not in self._ops:
            with self.graph.as_default():
                self._ops[key] = build()
        self.K.batch_get_value([self._ops[key]])


def attach(model, k, alpha, build_train_function, checkpoint=True, optimizer_state="keep"):
    """Route every (re)build of the model's train function through ``build_train_function``.

    ``build_train_function(model, K, training_updates)`` mirrors its TF
    version's ``_make_train_function``, with the pieces all versions share from
    here: ``feed_inputs``, ``training_updates()`` (the optimizer's updates and the
    Lookahead sync) and ``set_train_function``. ``checkpoint=False``: the model is
    no TF Trackable (standalone Keras), so nothing rides in its checkpoints.
    """
    optimizer_slots.check(model.optimizer, optimizer_state)
    K = engine_backend(model)
    # A model without weights yet (built by its first fit) lives in Keras' graph.
    graph = model.weights[0].graph if getattr(model, "built", True) and model.weights else keras_graph(K)
    with graph.as_default():
        step = K.variable(0, dtype="int64", name="lookahead_step")
    checkpointed = Checkpointed(model, step)
    store = GraphStore(K, graph, checkpointed)
    variables = LookaheadVariables(step, k, alpha, store, optimizer_state)
    start_pending = [True]

    def training_updates():
        return updates_with_lookahead(model, variables)

    def take_slow_weights_if_step_is_0():
        # Keras calls _make_train_function at the start of every fit,
        # fit_generator and train_on_batch call, right before the steps. After
        # inject, load_weights or set_state the step may be 0: then the slow
        # weights are taken here, in one session run, not by a check inside
        # every step (on a tiny TF 1 model each extra op per step costs).
        if start_pending[0] and variables.trained:
            if int(store.read([step])[0]) == 0:
                variables.take_slow(variables.trained)
            start_pending[0] = False

    def make_train_function():
        build_train_function(model, K, training_updates)
        take_slow_weights_if_step_is_0()

    def load_weights(*args, **kwargs):
        result = original_load_weights(*args, **kwargs)
        start_pending[0] = True          # a TF checkpoint may have put the step back to 0
        return result

    def compiled():
        # Keras builds the train function only at the next fit: the weights this
        # compile found frozen are forgotten here, so la.sync() right after it does
        # not move them, and a compile that unfreezes them before any step makes them join.
        variables.compiled(trainable_weights(model))

    def state_written():
        start_pending[0] = True

    def detach():
        undo.run()
        model.train_function = None

    with all_or_nothing() as undo:
        # Slow copies of the weights compile set to train, made now so that a TF
        # checkpoint loaded before the first step restores them; they are filled
        # by the first step (step 0), not taken again when the step is restored.
        variables.mark_trained(trainable_weights(model))
        # Instance attributes shadow the Model methods: fit, train_on_batch and
        # fit_generator all reach the train function through _make_train_function,
        # in every TF1/v1 version.
        original_load_weights = model.load_weights
        undo.set_attribute(model, "_make_train_function", make_train_function)
        undo.set_attribute(model, "load_weights", load_weights)
        follow_compile(model, undo, compiled)
        model.train_function = None
        undo.add(estimator.guard(model))
        attachment = Attachment(model, variables, detach=detach, state_written=state_written)
        if checkpoint:
            # Last: a tracked checkpoint dependency cannot be taken back, only emptied.
            checkpointed.track()
            undo.add(checkpointed.untrack)
    return h5_files.install(model, attachment)


def backend(build_train_function, check_model=None):
    """The ``Backend`` of a tf.keras graph backend whose builder is ``build_train_function``
    (see ``attach``); ``check_model`` refuses what this module's ``check`` lets through.
    No tf.distribute: refused in graph mode (``check``)."""
    def attach_(model, k, alpha, optimizer_state="keep"):
        return attach(model, k, alpha, build_train_function, optimizer_state=optimizer_state)
    return Backend(distribute=False, checkpoint_formats=CHECKPOINT_FORMATS,
                   check=check_model or check, attach=attach_)


def updates_with_lookahead(model, variables):
    """The optimizer's updates of the compiled trainable weights, followed by the sync.

    Under a loss-scale optimizer the sync is built inside its applied step, so a
    step it skips for non-finite gradients is not a Lookahead step.
    """
    params = model._collected_trainable_weights
    # compile() after inject may have brought an optimizer the option has no meaning
    # for: refused here, when the next train function is built.
    optimizer_slots.check(model.optimizer, variables.optimizer_state)
    variables.horovod = horovod.in_use(model.optimizer)
    # Built right before the first step it runs: weights joining take their slow copies now.
    variables.take_slow(variables.prepare(params))

    def sync_op(after):
        return variables.sync_op(params, after=after, optimizer=model.optimizer)
    with sync_inside_applied_step(model.optimizer, sync_op) as synced:
        updates = [_as_op(u) for u in model.optimizer.get_updates(params=params, loss=model.total_loss)]
    if synced:
        return updates
    return updates + [sync_op(updates)]


def feed_inputs(model, K):
    """The train function's inputs: features, targets, sample weights, learning phase."""
    inputs = model._feed_inputs + model._feed_targets + model._feed_sample_weights
    if not isinstance(K.symbolic_learning_phase(), int):
        inputs += [K.symbolic_learning_phase()]
    return inputs


def set_train_function(model, K, inputs, metrics_tensors, updates):
    """One K.function: loss and metrics out, every update (Lookahead's too) in one session run."""
    with K.name_scope("training"):
        model.train_function = K.function(
            inputs, [model.total_loss] + metrics_tensors,
            updates=updates, name="train_function", **model._function_kwargs)


def _as_op(update):
    # Old-style Keras optimizers may return (variable, new_value) pairs; the
    # sync must be ordered after them, so they become assign ops here.
    if isinstance(update, tuple):
        variable, value = update
        return tf.compat.v1.assign(variable, value)
    return update


def _shape(weight):
    return tuple(weight.shape.as_list())


def check(model):
    """Refuse models the graph builders cannot rebuild, before anything is changed."""
    horovod.check(model.optimizer)
    # The v1 engine distributes through its own training_distributed loop, which
    # never calls _make_train_function: Lookahead would silently not run there.
    if getattr(model, "_distribution_strategy", None) is not None or \
            tf.distribute.in_cross_replica_context():
        raise ModelNotReadyError(
            "The model was compiled under a tf.distribute strategy, and Lookahead under "
            "tf.distribute is not supported in graph mode (TF 1.x, or TF 2.x with eager "
            "execution disabled). Train it in TF 2 eager mode, where inject supports "
            "MirroredStrategy and MultiWorkerMirroredStrategy, or without a strategy.")
    if not hasattr(model, "_make_train_function"):
        raise ModelNotReadyError(
            "{} was not built by the graph-mode (v1) Keras engine, but eager "
            "execution is disabled. Build and compile the model after "
            "tf.compat.v1.disable_eager_execution(), in the same process.".format(
                type(model).__name__))
