"""The Lookahead update, written once for every backend.

Algorithm 1 of Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back":

    slow <- fast                          before the first fast step
    after fast steps k, 2k, 3k, ...:
        slow <- slow + alpha * (fast - slow)
        fast <- slow

The ops here use only public TensorFlow API and work in a TF1 graph, in a
``tf.function`` and eagerly. Each backend decides where they go (inside the
rebuilt graph train function, or inside the optimizer's apply step) and how the
variables are created; nothing here knows which TF version runs.
"""

import tensorflow as tf

from . import _optimizer_state


class LookaheadVariables(object):
    """One model's Lookahead state: a slow copy of each fast weight and a step counter.

    ``step`` counts fast steps taken since inject (not ``optimizer.iterations``,
    which a resumed run or a shared optimizer would shift). Slow weights are
    filled from the fast ones when ``step == 0``, at the first training step,
    so weights loaded or set after ``inject`` are the start point.
    """

    def __init__(self, fast, slow, step, k, alpha, handed_to_optimizer=None,
                 optimizer_state=_optimizer_state.KEEP, momentum_cache=()):
        self.fast = list(fast)
        self.slow = list(slow)
        self.step = step
        self.k = k
        self.alpha = alpha
        # The objects the optimizer is given for the fast weights (Keras 3 hands it
        # KerasVariables that wrap the tf.Variables in ``fast``).
        self.handed = list(handed_to_optimizer or self.fast)
        self._known = set(id(v) for v in self.handed)
        # What the sync does to the optimizer's state (_optimizer_state), and for
        # "pullback" one momentum copy per fast weight (zeros until the first sync).
        self.optimizer_state = optimizer_state
        self.momentum_cache = list(momentum_cache)

    def check_covers(self, params):
        """Refuse to train ``params`` that have no slow copy (made trainable after inject)."""
        known = self._known
        missing = [p.name for p in params if id(p) not in known]
        if missing:
            from ..errors import ModelNotReadyError
            raise ModelNotReadyError(
                "The model's trainable weights changed since inject (new: {}). "
                "Call la.remove() and inject again after changing which layers "
                "are trainable.".format(", ".join(missing)))

    def start_op(self):
        """Before the first fast step: ``slow <- fast`` if no step was taken yet."""
        def start():
            return _grouped([s.assign(f) for f, s in zip(self.fast, self.slow)])
        return _once_for_all_replicas(lambda: _if(tf.equal(self.step.read_value(), 0), start))

    def sync_op(self, after=(), optimizer=None):
        """After a fast step: count it, and on every k-th step pull fast and slow together.

        ``after`` are the ops of the fast step (graph mode); inside a
        ``tf.function`` or eagerly, program order already sequences the ops.
        ``optimizer`` took the step; its state is treated as ``optimizer_state`` says.
        """
        def count_and_sync():
            step = _updated(self.step.assign_add(1), self.step)
            # The phase in the cycle is the branch index: 0 syncs, any other does nothing.
            phase = tf.cast(tf.math.floormod(step, self.k), tf.int32)
            return tf.switch_case(phase, [lambda: self._pull_together(optimizer)],
                                  default=_nothing)
        with tf.control_dependencies(list(after)):
            return _once_for_all_replicas(count_and_sync)

    def _pull_together(self, optimizer=None):
        # The optimizer's slots are independent of the weights, so their ops need no order.
        assigns = _optimizer_state.sync_ops(self.optimizer_state, optimizer, self.handed,
                                            self.alpha, self.momentum_cache)
        for fast, slow in zip(self.fast, self.slow):
            alpha = tf.cast(self.alpha, tf.as_dtype(slow.dtype).base_dtype)
            # In place: slow += alpha (fast - slow) is one temporary and one update of
            # slow; the value it returns (read after the add) is copied into fast.
            assigns.append(fast.assign(_updated(slow.assign_add(alpha * (fast - slow)), slow)))
        return _grouped(assigns)


def slow_name(weight):
    """A variable name for the slow copy of ``weight`` ("dense/kernel:0" -> "dense_kernel")."""
    return "lookahead_slow_" + weight.name.split(":")[0].replace("/", "_")


def cache_name(weight):
    """A variable name for the momentum copy of ``weight`` (optimizer_state="pullback")."""
    return "lookahead_momentum_" + weight.name.split(":")[0].replace("/", "_")


def _once_for_all_replicas(fn):
    """Run ``fn`` once, in cross-replica context when under a tf.distribute strategy.

    The optimizer hook runs in each replica's context. There, a cond whose branch
    writes mirrored variables is not allowed, and each replica would write only
    its own copy. In cross-replica context (``merge_call``), reading a mirrored
    variable gives its value and assigning it writes every replica's copy with
    that same value, so replicas never drift apart.
    """
    if _has_strategy() and not tf.distribute.in_cross_replica_context():
        return tf.distribute.get_replica_context().merge_call(lambda strategy: fn())
    return fn()


def _has_strategy():
    # TF 1.x has no has_strategy; its graph backends refuse strategies altogether.
    return getattr(tf.distribute, "has_strategy", lambda: False)()


def _updated(result, variable):
    """The value of ``variable`` after the update that returned ``result``.

    TF 1 graphs order ops only by data dependency, so the update's own result is
    used. Under a strategy, TF 2.0-2.2 return per-replica values from a mirrored
    update, which ops cannot take; there the variable is read again (a
    tf.function orders that read after the update).
    """
    return variable.read_value() if _has_strategy() else result


def _if(predicate, then):
    """Run ``then()`` when ``predicate`` holds; a bool tensor says whether it ran.

    tf.switch_case (public since TF 1.14) builds the functional Case op even in a
    TF 1 graph. tf.cond there builds v1 control flow, a Switch per captured
    variable that executes, dead, on every step: with two conds per step that
    cost 14 % of a tiny model's 0.6 ms step on TF 1.15, the functional op nothing
    measurable (interleaved fit timings; README "Performance"). Eagerly it just
    calls the chosen branch.
    """
    return tf.switch_case(tf.cast(predicate, tf.int32), [_nothing, then])


def _grouped(ops):
    # Both branches return a bool "did it run" tensor of one structure; the
    # update ops run as its control dependencies.
    with tf.control_dependencies(ops):
        return tf.constant(True)


def _nothing():
    return tf.constant(False)
