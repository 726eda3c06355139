"""What happens to the inner optimizer's own state at a Lookahead sync: which
optimizers each ``optimizer_state`` fits, and where their slots are.

The options and their rule are stated in ``lookahead_inject.rule``. Details that
concern the optimizers: "reset" keeps the step count (``optimizer.iterations``,
Adam's bias-correction count) unlike optax's ``reset_state=True``, since in Keras it
is also the learning-rate schedule's step and the count Keras checkpoints and
reports; count-like scalars of an optimizer (Nadam's momentum-cache product) are
kept with it. "pullback" is what the paper's authors' code means to do: theirs keeps
a reference to the live buffer instead of a copy, so from the second sync on it only
scales the buffer by alpha (2 - alpha); a copy is kept here. They define it only for
SGD's momentum buffer, so other optimizers are refused.

The ops are built inside the sync branch, so the steps that do not sync run
none of them. The slots are found through each Keras version's optimizer API
(see ``slots_of``), never by variable name.
"""

from ...errors import OptimizerStateError
from ...rule import KEEP, PULLBACK, RESET
from . import horovod
from .optimizer_chain import innermost

#: Optimizers whose per-weight slots all start at zero in every Keras version (Keras 2
#: OptimizerV2, the Keras 2.11+ optimizers, Keras 3).
RESETTABLE = ("SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adadelta", "Lion")

_INITIAL_ACCUMULATOR = "its accumulators start at initial_accumulator_value, not at zero"

#: Why "reset" is refused, for optimizers whose state is known not to fit it.
NOT_RESETTABLE = {
    "Adagrad": _INITIAL_ACCUMULATOR,
    "Ftrl": _INITIAL_ACCUMULATOR,
    # Keras 2.11+ / tf-keras build _r / _c with a tf.Variable(0) per vector, which is
    # not in optimizer.variables: slots_of rejects those lists and finds _v alone.
    "Adafactor": (
        "its state is factored, not one zero slot shaped like each weight: per matrix a "
        "row and a column average of the squared gradients, from which it rebuilds the "
        "full estimate at every step (placeholders stand in for vectors). Keras 2's "
        "Adafactor (tf.keras 2.11+, tf-keras) makes those placeholders outside the "
        "optimizer's variables, so the reset would not find the factors and would zero "
        "only the estimate that the next step rebuilds from them"),
}


def check(optimizer, option):
    """Refuse an option this optimizer has no meaning for: at inject, and again when
    compile() brings another optimizer (Python side: Keras 3's get_config fails
    inside a traced step)."""
    if option == KEEP:
        return
    if horovod.in_use(optimizer):
        # Untested under Horovod: refused rather than trusted.
        raise OptimizerStateError(
            "optimizer_state={!r} is not supported with a Horovod DistributedOptimizer. "
            "Use optimizer_state='keep' under Horovod.".format(option))
    optimizer = innermost(optimizer)
    name = type(optimizer).__name__
    if not _has_slot_api(optimizer):
        raise OptimizerStateError(
            "optimizer_state={!r}: the optimizer {} offers no way to find its per-weight "
            "state (it is neither a Keras 2 OptimizerV2 nor a Keras 2.11+ / Keras 3 "
            "optimizer). Use optimizer_state='keep' or a tf.keras optimizer.".format(option, name))
    if option == RESET and name not in RESETTABLE:
        raise OptimizerStateError(
            "optimizer_state='reset' knows the initial state of these optimizers only: {}; "
            "not {}'s: {}. Use optimizer_state='keep', or one of those optimizers.".format(
                ", ".join(RESETTABLE), name,
                NOT_RESETTABLE.get(name, "its state is not known here")))
    if option == PULLBACK:
        momentum = _momentum(optimizer)
        if name != "SGD" or not momentum:
            raise OptimizerStateError(
                "optimizer_state='pullback' interpolates SGD's momentum buffer (the paper's "
                "authors define it for that buffer only); the optimizer is {}{}. Use SGD "
                "with momentum > 0, or optimizer_state='reset' / 'keep'.".format(
                    name, "" if name != "SGD" else " with momentum=0" if momentum == 0 else
                    " whose momentum could not be read as a number"))


def sync_ops(option, optimizer, trained, alpha, cache=()):
    """The ops that update the optimizer's state at a sync, for weights ``trained``.

    ``trained`` are the variables the optimizer is given (Keras 3: its
    KerasVariables); ``cache`` holds, for "pullback", one momentum copy per
    trained weight. Built when the sync branch is traced, after the optimizer
    created its slots.
    """
    if option == KEEP:
        return []
    from ...rule import tf_rule     # TF: not imported by the Keras 3 JAX / torch backends
    optimizer = innermost(optimizer)
    slots = [[_tf_variable(slot) for slot in weight_slots]
             for weight_slots in slots_of(optimizer, trained)]
    if option == RESET:
        return tf_rule.reset([slot for weight_slots in slots for slot in weight_slots])
    buffers, cached = [], []
    for weight_slots, copy in zip(slots, cache):
        if len(weight_slots) > 1:
            # check() refused this optimizer at inject / compile; training went on anyway.
            raise OptimizerStateError(
                "optimizer_state='pullback' needs SGD with momentum; {} keeps {} buffers "
                "per weight. Compile with SGD(momentum=...) again, or inject with another "
                "optimizer_state.".format(type(optimizer).__name__, len(weight_slots)))
        buffers += weight_slots         # SGD's only slot is its momentum
        cached += [copy] * len(weight_slots)
    return tf_rule.pullback(buffers, cached, alpha)


def _momentum(optimizer):
    """The momentum in the optimizer's config as a float (a Keras 2 OptimizerV2 that ran in
    a graph reports numpy scalars); None when unknown: a schedule, or a get_config that
    raises (the refusal then says so instead of "momentum=0")."""
    try:
        config = optimizer.get_config()
    except Exception:       # a custom optimizer's own get_config; a warning under -W error
        return None
    try:
        return float(config.get("momentum", 0.0))
    except (TypeError, ValueError):
        return None


def _has_slot_api(optimizer):
    # The Keras 2.11+ and Keras 3 optimizers both key their per-variable index by
    # `_var_key` (the index itself exists only once the optimizer is built).
    return hasattr(optimizer, "get_slot_names") or hasattr(optimizer, "_var_key")


def slots_of(optimizer, trained):
    """Per trained weight, the list of its slot variables (Keras 3: KerasVariables)."""
    if hasattr(optimizer, "get_slot_names"):
        # Keras 2 OptimizerV2 (TF 1.14 - 2.10 default, `legacy` from 2.11, tf-keras
        # legacy): public get_slot_names / get_slot. get_slot raises KeyError for a
        # name that this weight has no slot of (e.g. RMSprop's "mg" unless centered).
        out = []
        for weight in trained:
            found = []
            for name in optimizer.get_slot_names():
                try:
                    found.append(optimizer.get_slot(weight, name))
                except KeyError:
                    pass
            out.append(found)
        return out
    # Keras 2.11+ (keras / tf-keras `Optimizer`) and Keras 3 keep each kind of slot in a
    # list indexed like the variables the optimizer was built on, and publish neither
    # the lists nor the index: the index is `_get_variable_index` (Keras 3) or
    # `_index_dict[_var_key(v)]` (Keras 2.11+). A slot list is a list attribute as long
    # as that index whose entries are all optimizer variables, other than the list of
    # all variables, the EMA averages and the gradient accumulators (those start at
    # the weights / belong to accumulation, not to the update rule's state).
    if hasattr(optimizer, "_get_variable_index"):
        index = optimizer._get_variable_index
        size = len(optimizer._trainable_variables_indices)
    else:
        index = lambda v: optimizer._index_dict[optimizer._var_key(v)]    # noqa: E731
        size = len(optimizer._index_dict)
    variables = optimizer.variables
    # Keras 2.11's new Optimizer has variables() as a method; 2.12+ and Keras 3 a property.
    own = set(id(v) for v in (variables() if callable(variables) else variables))
    excluded = set(id(getattr(optimizer, name, None)) for name in (
        "_variables", "_model_variables_moving_average", "_accumulated_gradients"))
    lists = []
    for name in sorted(vars(optimizer)):
        value = vars(optimizer)[name]
        if (isinstance(value, list) and id(value) not in excluded and len(value) == size
                and size and all(v is None or id(v) in own for v in value)):
            lists.append(value)
    out = []
    for weight in trained:
        try:
            i = index(weight)
        except KeyError:          # a weight this optimizer was not built on has no state
            out.append([])
            continue
        out.append([lst[i] for lst in lists if lst[i] is not None])
    return out


def _tf_variable(variable):
    # Keras 3 slots are KerasVariables; the TF ops need the tf.Variable behind them.
    import tensorflow as tf
    return variable if isinstance(variable, tf.Variable) else variable.value
