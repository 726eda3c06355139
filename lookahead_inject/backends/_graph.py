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

from ..errors import ModelNotReadyError
from ._attachment import Attachment
from . import _optimizer_state
from ._optimizer_state import PULLBACK
from ._sync import LookaheadVariables, cache_name, slow_name


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


def create_variables(model, K, k, alpha, optimizer_state="keep"):
    """Slow copies and the step counter, as Keras variables of the model's graph.

    They start as zeros, not as ``K.variable(p)``: the blog's initial value read
    ``p`` in the same initializer run as ``p``'s own (FailedPreconditionError
    on a fresh TF1 model) and froze the values at inject time. The slow copies
    are filled from the fast weights by the first training step instead.
    """
    fast = list(model.trainable_weights)

    def zeros_like(w, name):
        return K.variable(np.zeros(_shape(w), dtype=w.dtype.base_dtype.as_numpy_dtype),
                          dtype=w.dtype.base_dtype, name=name)

    with fast[0].graph.as_default():
        slow = [zeros_like(w, slow_name(w)) for w in fast]
        cache = [zeros_like(w, cache_name(w)) for w in fast] if optimizer_state == PULLBACK else []
        step = K.variable(0, dtype="int64", name="lookahead_step")
    return LookaheadVariables(fast, slow, step, k, alpha, optimizer_state=optimizer_state,
                              momentum_cache=cache)


def attach(model, k, alpha, build_train_function, optimizer_state="keep"):
    """Route every (re)build of the model's train function through ``build_train_function``.

    ``build_train_function(model, K, training_updates)`` mirrors its TF
    version's ``_make_train_function``, with the pieces all versions share from
    here: ``feed_inputs``, ``training_updates()`` (the optimizer's updates and the
    Lookahead sync) and ``set_train_function``.
    """
    K = engine_backend(model)
    variables = create_variables(model, K, k, alpha, optimizer_state)

    def training_updates():
        return updates_with_lookahead(model, variables)

    with variables.fast[0].graph.as_default():
        start = variables.start_op()
    start_pending = [True]

    def make_train_function():
        build_train_function(model, K, training_updates)
        # Keras calls this at the start of every fit, fit_generator and
        # train_on_batch call, right before the steps. The slow weights are taken
        # here (slow <- fast while step == 0) in one session run, not by a check
        # inside every step: on a tiny TF 1 model each extra op per step costs.
        if start_pending[0]:
            K.batch_get_value([start])
            start_pending[0] = False

    def load_weights(*args, **kwargs):
        result = original_load_weights(*args, **kwargs)
        start_pending[0] = True          # a TF checkpoint may have put the step back to 0
        return result

    # Instance attributes shadow the Model methods: fit, train_on_batch and
    # fit_generator all reach the train function through _make_train_function,
    # in every TF1/v1 version.
    original_load_weights = model.load_weights
    model._make_train_function = make_train_function
    model.load_weights = load_weights
    model.train_function = None

    def detach():
        del model._make_train_function
        del model.load_weights
        model.train_function = None

    def state_written():
        start_pending[0] = True

    return Attachment(
        model, variables,
        read=K.batch_get_value,
        write=lambda vs, values: K.batch_set_value(list(zip(vs, values))),
        detach=detach, state_written=state_written)


def updates_with_lookahead(model, variables):
    """The optimizer's updates of the compiled trainable weights, followed by the sync."""
    params = model._collected_trainable_weights
    variables.check_covers(params)
    # compile() after inject may have brought an optimizer the option has no meaning for.
    _optimizer_state.check(model.optimizer, variables.optimizer_state)
    updates = [_as_op(u) for u in model.optimizer.get_updates(params=params, loss=model.total_loss)]
    return updates + [variables.sync_op(after=updates, optimizer=model.optimizer)]


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
