"""What the standalone-Keras backends (keras22, keras23) share.

Standalone Keras (``import keras``, 2.2 / 2.3 on TF 1.x) has an engine of its
own, but its ``Model._make_train_function`` is the same shape as TF 1.x
tf.keras': one ``K.function`` whose updates are the optimizer's plus the
model's. So these backends reuse ``_train_function.attach`` (the Lookahead ops appended
to that ``K.function``) with a builder that mirrors the Keras version's own.
What differs from tf.keras: the learning phase is an input only when the model
uses it (``_uses_dynamic_learning_phase``; there is no
``symbolic_learning_phase``), Keras 2.2 makes TF1 ref variables (the sync's branch
finds them by name, see ``common.tf_sync._names``; v1 control flow where it captures
one: ``_captures_refs``), and the models are not
TF Trackables: their weights are saved to HDF5 only, so no TF checkpoint carries
the Lookahead state; their HDF5 files do (``common.h5_files``, installed by
``_train_function.attach``).
"""

from ...errors import OptimizerStateError
from .. import Backend
from ..common import h5_files
from . import _train_function


def attach(model, k, alpha, build_train_function, optimizer_state="keep"):
    if optimizer_state != "keep":
        # Standalone Keras' optimizers make their moments inside get_updates and offer
        # no per-weight slot API to find them by.
        raise OptimizerStateError(
            "optimizer_state={!r} is not supported on standalone Keras {} (import keras): "
            "its optimizers offer no way to find their per-weight state. Use "
            "optimizer_state='keep', or build the model with tf.keras.".format(
                optimizer_state, _keras_version()))
    return _train_function.attach(model, k, alpha, build_train_function, checkpoint=False)


def backend(build_train_function):
    """The ``Backend`` of a standalone-Keras version whose builder is ``build_train_function``.
    No tf.distribute: standalone Keras has no strategies. It saves to HDF5 only, and its
    files carry the state (common.h5_files, through _train_function.attach)."""
    def attach_(model, k, alpha, optimizer_state="keep"):
        return attach(model, k, alpha, build_train_function, optimizer_state)
    return Backend(distribute=False, checkpoint_formats=(h5_files.FORMAT,),
                   check=_train_function.check, attach=attach_)


def _keras_version():
    import keras
    return keras.__version__


def feed_inputs(model, K):
    """The train function's inputs as Keras 2.2 / 2.3 list them."""
    inputs = model._feed_inputs + model._feed_targets + model._feed_sample_weights
    if model._uses_dynamic_learning_phase():
        inputs += [K.learning_phase()]
    return inputs


def build_train_function(model, K, training_updates, training_metrics):
    """``Model._make_train_function`` of Keras 2.2 / 2.3, with the sync in the same
    ``K.function``: the model's updates (BatchNormalization statistics), then the
    optimizer's and the sync, then the metrics'. ``training_metrics(model)`` gives
    the metrics' (output tensors, updates): where each Keras version keeps them.
    """
    if not hasattr(model, "train_function"):
        raise RuntimeError("You must compile your model before using it.")
    model._check_trainable_weights_consistency()
    if model.train_function is not None:
        return
    inputs = feed_inputs(model, K)
    with K.name_scope("training"):
        # In the name scope Keras gives the optimizer: Keras 2.2 / 2.3 create Adam's
        # moments inside get_updates, so their variable names (and the names in a
        # saved model's optimizer weights) follow it.
        with K.name_scope(model.optimizer.__class__.__name__):
            optimizer_updates = training_updates()
        metrics_tensors, metrics_updates = training_metrics(model)
        model.train_function = K.function(
            inputs, [model.total_loss] + metrics_tensors,
            updates=model.updates + optimizer_updates + metrics_updates,
            name="train_function", **model._function_kwargs)
