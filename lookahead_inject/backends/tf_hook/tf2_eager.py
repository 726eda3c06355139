"""TF 2.0-2.15 eager, and tf-keras on TF 2.16+ (Keras 2 behind tf.keras).

The blog's graph rebuild has nothing to rebuild here: TF 2.0/2.1 train through
the training_v2 loop and never call ``model.train_function``; TF 2.2+ trace
``train_step`` into ``model.train_function``. Both end in
``optimizer.apply_gradients``, which carries the Lookahead sync (see
``_optimizer_hook``), with ``run_eagerly`` True or False.
"""

from .. import Backend
from ..common import h5_files, tf_checkpoint
from . import _optimizer_hook

# A loss-scale optimizer calls its inner optimizer's apply_gradients only for
# finite gradients: the hook sits on the inner one (_optimizer_hook).
METHOD = "apply_gradients"


def check(model):
    _optimizer_hook.check(model, METHOD)


def attach(model, k, alpha, optimizer_state="keep"):
    attachment = _optimizer_hook.attach(model, _strategy(model), _the_weight_itself, k, alpha,
                                        METHOD, _trained_variables, _retrace,
                                        optimizer_state=optimizer_state)
    return h5_files.install(model, attachment)


def _the_weight_itself(weight):
    # Keras 2 hands the optimizer the tf.Variables themselves.
    return weight


def _trained_variables(args, kwargs):
    # apply_gradients(grads_and_vars, ...): every Keras 2 caller passes the pairs
    # positionally, often as a zip, so they are read once and handed on as a list.
    if args:
        pairs, args = list(args[0]), tuple(args[1:])
    else:
        pairs = list(kwargs.pop("grads_and_vars"))
    return (pairs,) + args, kwargs, [v for _, v in pairs]


def _strategy(model):
    # `distribute_strategy` is public from TF 2.2; 2.0/2.1 keep it private (None
    # outside a strategy scope).
    if hasattr(model, "distribute_strategy"):
        return model.distribute_strategy
    return model._distribution_strategy


def _retrace(model):
    # TF 2.2+ cache the traced step in model.train_function (compile resets it);
    # TF 2.0/2.1 cache it in model._distributed_function_cache.
    model.train_function = None
    cache = getattr(model, "_distributed_function_cache", None)
    if cache is not None:
        cache.clear()


BACKEND = Backend(
    # Under a tf.distribute strategy the sync runs in cross-replica context.
    distribute=True,
    checkpoint_formats=(tf_checkpoint.TF_WEIGHTS, tf_checkpoint.TF_CHECKPOINT, h5_files.FORMAT),
    check=check, attach=attach)
