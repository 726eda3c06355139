"""Lookahead under Horovod (``hvd.DistributedOptimizer``): every rank trains the same Lookahead.

Horovod runs one process per rank. Each process injects Lookahead into its own
model, so each one has its own slow weights and step counter, and Horovod knows
nothing about them: ``BroadcastGlobalVariablesCallback(0)`` broadcasts the
model's and the optimizer's variables from rank 0 after the first batch (in TF 2
eager; in graph mode every global variable), and the allreduce averages the
gradients. A rank that starts from its own random weights takes its slow
weights from them, so without this module every sync pulls that rank back
towards its own start and the ranks drift apart (0.6 in tests/test_horovod.py).

The fix, ``share_start``: right after a rank copies slow <- fast (the start of
Lookahead, at the first training step), the slow weights are replaced by rank
0's. That is the one moment the slow weights are not a function of the shared
trajectory; from then on every rank applies the same averaged gradient to the
same weights (Horovod's broadcast makes the fast weights and the optimizer state
rank 0's) and the same sync to the same slow weights. It does not depend on
what the user's broadcast covers (the callback, ``hvd.broadcast_variables`` of
the model only, or nothing because the ranks start alike).

The step counter is not broadcast: ``share_start`` runs only where the counter is
0, and every rank counts the same steps from there (each takes every step, in
lockstep with the allreduce). It stays equal as long as every rank injects with
the same k and, when resuming, every rank loads the same state (``la.load`` on
each rank); docs/multiple-devices.md, "Horovod".

Horovod is recognised by its optimizer class: ``hvd.DistributedOptimizer(opt)``
returns an instance of a class made with ``type()`` from a class body in
``horovod._keras`` (``horovod.tensorflow.keras`` and ``horovod.keras`` both),
named like the user's optimizer and subclassing it. Its ``__module__`` is the
one mark that is neither private nor the user's (checked on 0.28.1); ``horovod``
itself is imported only when such an optimizer is found.
"""

from ...errors import ModelNotReadyError
from .optimizer_chain import chain

#: Horovod's rank whose weights every rank takes (the one BroadcastGlobalVariablesCallback(0) uses).
ROOT_RANK = 0


def in_use(optimizer):
    """Whether ``optimizer`` (or one it wraps: a loss-scale optimizer around Horovod's) is a
    Horovod DistributedOptimizer."""
    return any(_is_horovod_class(type(wrapper)) for wrapper in chain(optimizer))


def _is_horovod_class(cls):
    return any(c.__module__.split(".")[0] == "horovod" for c in cls.__mro__)


def check(optimizer):
    """Refuse what Lookahead cannot count right under Horovod."""
    if not in_use(optimizer):
        return
    passes = _backward_passes_per_step(optimizer)
    if passes > 1:
        raise ModelNotReadyError(
            "hvd.DistributedOptimizer(..., backward_passes_per_step={0}) applies the "
            "gradients of {0} batches as one weight update, but its apply_gradients runs "
            "for every batch, so Lookahead would count {0} steps per update and sync "
            "after k/{0} updates. Use backward_passes_per_step=1 (the default) with "
            "Lookahead; for a larger effective batch, raise the batch size per rank or "
            "the number of ranks.".format(passes))


def _backward_passes_per_step(optimizer):
    # Horovod keeps the count only on its aggregation helper (None when it is 1):
    # LocalGradientAggregationHelper(Eager).backward_passes_per_step in 0.28.1.
    for wrapper in chain(optimizer):
        helper = getattr(wrapper, "_agg_helper", None)
        if helper is not None:
            return int(getattr(helper, "backward_passes_per_step", 1))
    return 1


def share_start(slow, after=()):
    """Set every rank's ``slow`` variables to rank 0's values; returns the assign ops.

    Call it right after the copy slow <- fast, on every rank at the same step (it
    is a collective: a rank that does not call it makes the others wait).
    ``after`` are the copy ops (a TF 1 graph orders ops only by dependencies;
    in a ``tf.function`` or eagerly program order already does). Works in a
    graph, in a ``tf.function`` (also inside a ``tf.switch_case`` branch) and
    eagerly.
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    assigns = []
    with tf.control_dependencies(list(after)):
        for index, variable in enumerate(slow):
            # Horovod matches collectives across ranks by name: explicit names
            # keep them equal on every rank whatever the graph's own op names are.
            value = hvd.broadcast(tf.identity(variable.read_value()), ROOT_RANK,
                                  name="lookahead_inject_slow_{}".format(index))
            assigns.append(variable.assign(value))
    return assigns
