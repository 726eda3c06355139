"""Keras 3 with the TensorFlow backend (tf.keras on TF 2.16+, or ``import keras``).

Keras 3 has no graph mode and no ``K.function``, so the blog's rebuild cannot
exist. Every optimizer update, from ``apply_gradients`` or the loss-scale
optimizer, goes through ``optimizer.apply(grads, trainable_variables)``, which
carries the Lookahead sync (see ``_optimizer_hook``). The sync works on the
``tf.Variable`` behind each Keras variable.
"""

from . import _optimizer_hook
from ..errors import ModelNotReadyError

#: Lookahead under a tf.distribute strategy: the sync runs in cross-replica context.
DISTRIBUTE = True

#: Checkpoint formats that carry the Lookahead state by themselves (tests/test_state.py).
CHECKPOINT_FORMATS = ("tf.train.Checkpoint(model=model, optimizer=model.optimizer)",)

METHOD = "apply"


def innermost(optimizer):
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def check(model):
    steps = getattr(innermost(model.optimizer), "gradient_accumulation_steps", None)
    if steps:
        raise ModelNotReadyError(
            "The optimizer accumulates gradients over {} calls "
            "(gradient_accumulation_steps), so a call is not a weight update and "
            "Lookahead's k would count the wrong thing. Compile without "
            "gradient_accumulation_steps to use Lookahead.".format(steps))
    _optimizer_hook.check_not_hooked(model.optimizer, METHOD, innermost)


def attach(model, k, alpha, optimizer_state="keep"):
    keras_variables = list(model.trainable_variables)
    # KerasVariable.value is the backing tf.Variable outside an autocast scope,
    # which is where inject runs; the sync's tf ops need tf.Variables.
    fast = [v.value for v in keras_variables]
    variables = _optimizer_hook.create_variables(
        fast, k, alpha, model.distribute_strategy, handed_to_optimizer=keras_variables,
        optimizer_state=optimizer_state)
    return _optimizer_hook.attach(model, variables, METHOD, innermost, _trained_variables, _retrace)


def _trained_variables(args, kwargs):
    # apply(grads, trainable_variables=None); None means "the variables it was built on".
    trained = args[1] if len(args) > 1 else kwargs.get("trainable_variables")
    return args, kwargs, None if trained is None else list(trained)


def _retrace(model):
    model.train_function = None
