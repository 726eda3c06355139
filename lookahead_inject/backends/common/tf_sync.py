"""The Lookahead state of the TF backends and the ops that take and sync it.

The rule itself (Algorithm 1 and the optimizer-state options) is ``rule.tf_rule``;
this module decides when it runs and on which weights. Only the weights the
training step trains are synced: a frozen weight is never written.
A weight takes its slow copy at the first step that trains it (also one created by
the first call of a model that had no weights at inject), and again only at the
first step that trains it after a ``compile()`` that found it frozen; the others
keep theirs and the step count. A step that leaves a weight out (a loop of the
user's own that drops the weights without a gradient) neither writes it nor
forgets its slow copy.

The ops here use only public TensorFlow API and work in a TF1 graph, in a
``tf.function`` and eagerly. Each backend decides where they go (inside the
rebuilt graph train function, or inside the optimizer's apply step), how the
variables are created and how values are read and written now; nothing here
knows which TF version runs.
"""

import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2
# GraphOrParentsInXlaContext (TF 1.14 - 2.21): whether a step XLA compiles is being traced.
from tensorflow.python.ops import control_flow_util

from ...rule import KEEP, PULLBACK, tf_rule
from . import horovod, lookahead_state, optimizer_slots


class LookaheadVariables(lookahead_state.LookaheadState):
    """One model's Lookahead state on TF: a slow copy per trained weight and a step counter.

    ``step`` counts fast steps taken since inject (not ``optimizer.iterations``,
    which a resumed run or a shared optimizer would shift). ``store`` is the
    backend's vocabulary: ``make_slow(weight)`` creates a zero variable like
    ``weight``, ``tf_variable(weight)`` is the TF variable behind what the
    optimizer is handed, ``read`` / ``write`` move values now (not in a step),
    ``run(key, build)`` runs the ops ``build()`` makes, now (``make_flag()``: eagerly only),
    ``making_slow_copies()`` is a context around making several at once,
    ``restored(slow)`` whether a TF checkpoint filled a slow copy as it was made.
    The graph family's store is ``graph._train_function.GraphStore``, the hook family's
    ``tf_hook._optimizer_hook.EagerStore``.
    ``optimizer_state`` is what a sync does to the optimizer's own state
    (``optimizer_slots``); for "pullback" each weight also gets a momentum copy,
    made with its slow copy (``store.make_slow(weight, kind="momentum")``).
    """

    def __init__(self, step, k, alpha, store, optimizer_state=KEEP):
        self.step, self.k, self.alpha, self.store = step, k, alpha, store
        self.optimizer_state = optimizer_state
        self._slow = {}        # id(weight) -> (weight, its slow copy, its momentum copy or None)
        self._current = {}     # id(weight) -> weight, for the weights whose slow copy is current
        #: The weights a sync (``la.sync()``) pulls: those the last step built trains, in
        #: its order, or since a later ``compile()`` its trainable weights with current copies.
        self.trained = []
        self._join = None      # (ids of a step's weights, (fast, slow) pairs joining, flag)
        #: Whether the optimizer is Horovod's (set by the backend): see ``_take_slow_ops``.
        self.horovod = False

    @property
    def slow(self):
        """Every slow copy made so far (for checks across replicas)."""
        return [slow for _, slow, _ in self._slow.values()]

    def slow_for(self, weight):
        """The slow copy of ``weight``, created (zeros) the first time it is asked for."""
        return self._entry(weight)[1]

    def momentum_for(self, weight):
        """The momentum copy of ``weight`` (optimizer_state="pullback"; zeros until
        its first sync), made with its slow copy."""
        return self._entry(weight)[2]

    def _entry(self, weight):
        entry = self._slow.get(id(weight))
        if entry is None:
            momentum = (self.store.make_slow(weight, kind="momentum")
                        if self.optimizer_state == PULLBACK else None)
            entry = self._slow[id(weight)] = (weight, self.store.make_slow(weight), momentum)
        return entry

    def taken(self):
        """The weights whose slow copies are taken that training trains (what
        ``Lookahead.sync()`` pulls and ``get_state()`` reads)."""
        return list(self.trained)

    def compiled(self, trainable):
        """A ``compile()`` made ``trainable`` the trainable weights: the weights it found
        frozen take new slow copies at the next step that trains them."""
        ids = set(id(w) for w in trainable)
        self._current = {i: w for i, w in self._current.items() if i in ids}
        self.trained = [w for w in trainable if id(w) in self._current]
        self._join = None

    def prepare(self, weights):
        """Called where a training step of ``weights`` is built, before it first runs;
        returns the weights that join (no current slow copy: never trained, or frozen
        at a ``compile()`` since), once: their slow copies are made here, to be filled
        by the caller (``take_slow`` now, or the step: ``start_op``).
        """
        weights = list(weights)
        joining = lookahead_state.joining(self._current.values(), weights)
        restored = self._made(joining)
        self._current.update((id(w), w) for w in joining)
        self.trained = weights
        # A copy a checkpoint filled as it was made (a model that had no weights at inject,
        # resumed from a TF checkpoint) holds the slow weight it saved, not to be
        # overwritten by the fast weight.
        return [w for w in joining if id(w) not in restored]

    def _made(self, weights):
        """Every one of ``weights`` has its slow copy (made now where it had none); returns
        the ids of those whose copy, made now, a TF checkpoint filled (``store.restored``)."""
        new = [w for w in weights if id(w) not in self._slow]
        with self.store.making_slow_copies():
            for weight in weights:
                self._entry(weight)
        return set(id(w) for w in new if self.store.restored(self.slow_for(w)))

    def take_slow(self, weights):
        """``slow <- fast`` for ``weights``, now."""
        if weights:
            slow = [self.slow_for(w) for w in weights]
            self.store.write(slow, self.store.read(weights))
            if self.horovod:
                self.store.run(("horovod",) + tuple(id(s) for s in slow),
                               lambda: _grouped(horovod.share_start(slow)))

    def mark_trained(self, weights):
        """``weights`` hold valid slow copies (set from outside): do not take them again."""
        self._made(weights)
        self._current = {id(w): w for w in weights}
        self.trained, self._join = list(weights), None

    def add_current(self, weights):
        """``weights`` hold valid slow copies now, beside those that do already (the Keras 2
        ``LookaheadOptimizer`` makes each equal to its weight when it first sees it)."""
        self._made(weights)
        self._current.update((id(w), w) for w in weights)

    def read(self, variables):
        return self.store.read(variables)

    def write(self, variables, values):
        self.store.write(variables, values)

    def sync_now(self):
        """``pull_together`` (the in-step sync's rule without the optimizer state's), now."""
        trained = self.trained
        pairs = self.pairs(trained)
        self.store.run(("sync",) + tuple(id(w) for w in trained),
                       lambda: pull_together(pairs, self.alpha))

    def pairs(self, weights):
        """(fast TF variable, slow copy) for each of ``weights``."""
        return [(self.store.tf_variable(w), self.slow_for(w)) for w in weights]

    def start_op(self, weights):
        """Before a fast step of ``weights``, in a traced (or eager) step: ``slow <- fast``

        - for ``weights`` and every other weight with a current slow copy, if no step was
          taken yet (step 0: after inject, or a state reset to 0); one that the first step
          leaves out still holds, at the first step that trains it, the value it has now;
        - else for the weights that join (``prepare``: never trained, or frozen at a
          ``compile()`` since), at the step's first run only (a one-time flag).

        One Case op for both: a Case takes every variable its branches use as an input of
        each step, run or not (issue #22, benchmarks/case_inputs.py). In the step, not at
        trace time: a weight the traced step creates itself (Keras 3 building a model in
        its first step) has no value before it runs. Every trace of one step gets the same
        join: ``tf.function`` traces a step that creates variables (optimizer slots, the
        flag) twice and runs the second. Eagerly this runs at every step: the join is
        decided again only when the step's weights differ from the last step's (or a
        ``compile()`` came between).
        """
        def start():
            joining, pending = self._joining(weights)
            ids = set(id(w) for w in weights)
            pairs = self.pairs(list(weights) + [w for i, w in self._current.items()
                                                if i not in ids])
            step_is_0 = tf.equal(self.step.read_value(), 0)
            if pending is None:
                captures = _variables(pairs, [self.step])
                names = _names(pairs, captures)
                return _run_if(step_is_0, lambda: self._take_slow_ops(pairs, names),
                               refs=_captures_refs(pairs, names), captures=captures)
            captures = _variables(pairs, [self.step, pending])
            names, joining_names = _names(pairs, captures), _names(joining, captures)

            def take_all():
                return self._take_slow_ops(pairs, names, [pending.assign(False)])

            def take_joining():
                return self._take_slow_ops(joining, joining_names, [pending.assign(False)])
            # The branch index: 0 takes nothing, 1 every copy (step 0), 2 the joining ones.
            index = tf.where(step_is_0, 1, tf.where(pending.read_value(), 2, 0))
            return _switch_case(index, [_nothing, take_all, take_joining], captures=captures)
        return once_for_all_replicas(start)

    def _joining(self, weights):
        """(the (fast, slow) pairs of the weights that join at a step of ``weights``, the
        one-time flag that says they are still to be taken) or ((), None): none join."""
        key = tuple(id(w) for w in weights)
        if self._join is None or self._join[0] != key:
            joining = self.prepare(weights)
            self._join = (key, self.pairs(joining), self.store.make_flag() if joining else None)
        return self._join[1:]

    def _take_slow_ops(self, pairs, names, also=()):
        """The ops ``slow <- fast`` for ``pairs`` (and ``also``), in a branch of a step
        (``names``: see ``_names``)."""
        copies = [s.assign(f.read_value()) for f, s in _reached(pairs, names)] + list(also)
        # --- Horovod (common/horovod.py) -----------------------------------
        # Each rank copied its own fast weights, which Horovod's broadcast replaces
        # with rank 0's only later and never the slow copies: every rank takes
        # rank 0's slow weights here, in the same step, so all ranks train one Lookahead.
        if self.horovod:
            copies += horovod.share_start([s for _, s in pairs], after=copies)
        # -----------------------------------------------------------------------
        return _grouped(copies)

    def sync_op(self, weights, after=(), applied=None, optimizer=None):
        """After a fast step of ``weights``: count it, and on every k-th step pull
        fast and slow together (and treat ``optimizer``'s state of ``weights`` as
        ``optimizer_state`` says).

        ``after`` are the ops of the fast step (graph mode); inside a
        ``tf.function`` or eagerly, program order already sequences the ops.
        ``applied`` (a bool tensor) says whether the call updated the weights at
        all; an optimizer that accumulates gradients updates them only on some
        calls, and only those are Lookahead steps.
        """
        pairs = self.pairs(weights)
        momentum = ([self.momentum_for(w) for w in weights]
                    if self.optimizer_state == PULLBACK else ())
        captures = _variables(pairs, list(momentum) + [self.step])
        names = _names(pairs, captures)

        def sync():
            # Built inside the branch, so steps that do not sync run none of it; the
            # optimizer's slots are not the weights, so the two need no order.
            also = optimizer_slots.sync_ops(self.optimizer_state, optimizer, weights,
                                             self.alpha, momentum)
            return pull_together(_reached(pairs, names), self.alpha, also)

        def count_and_sync():
            step = tf_rule.updated(self.step.assign_add(1), self.step)
            # The phase in the cycle is the branch index: 0 syncs, any other does nothing.
            phase = tf.cast(tf.math.floormod(step, self.k), tf.int32)
            if _captures_refs(pairs, names):
                return _run_if(tf.equal(phase, 0), sync, refs=True)
            return _switch_case(phase, [sync], default=_nothing, captures=captures)

        def count_and_sync_if_applied():
            # Decided in cross-replica context like the sync itself: a cond whose
            # branch calls merge_call is not allowed in a replica context.
            return (count_and_sync() if applied is None
                    else _run_if(applied, count_and_sync, captures=captures))
        with tf.control_dependencies(list(after)):
            return once_for_all_replicas(count_and_sync_if_applied)


def run_if(predicate, then, captures):
    """Run ``then()`` (it builds the ops and returns a bool tensor) when the bool tensor
    ``predicate`` holds, built as the sync's branches are (``_run_if``); ``captures``
    are the variables ``then`` uses. For resource variables (Keras 3 on TensorFlow's
    ``LookaheadOptimizer``: ``native.keras3_tensorflow``)."""
    return _run_if(predicate, then, captures=captures)


def pull_together(pairs, alpha, also=()):
    """``tf_rule.pull`` on the (fast, slow) pairs, after the ops ``also`` (the optimizer
    state's at an in-step sync), as one "it ran" tensor. The in-step sync and
    ``Lookahead.sync()`` both run this."""
    pulled = tf_rule.pull([fast for fast, _ in pairs], [slow for _, slow in pairs], alpha)
    return _grouped(list(also) + pulled)


def slow_name(weight, kind="slow"):
    """A variable name for the slow (or ``kind="momentum"``: momentum) copy of
    ``weight`` ("dense/kernel:0" -> "lookahead_slow_dense_kernel")."""
    return "lookahead_{}_{}".format(kind, weight.name.split(":")[0].replace("/", "_"))


def once_for_all_replicas(fn):
    """Run ``fn`` once, in cross-replica context when under a tf.distribute strategy.

    The optimizer hook runs in each replica's context. There, a cond whose branch
    writes mirrored variables is not allowed, and each replica would write only
    its own copy. In cross-replica context (``merge_call``), reading a mirrored
    variable gives its value and assigning it writes every replica's copy with
    that same value, so replicas never drift apart.
    """
    if tf_rule.has_strategy() and not tf.distribute.in_cross_replica_context():
        return tf.distribute.get_replica_context().merge_call(lambda strategy: fn())
    return fn()


def _is_ref(variable):
    # A TF1 ref variable's dtype is the "_ref" twin of its base dtype (as_dtype: a
    # Keras 3 variable's dtype is a string).
    dtype = tf.as_dtype(variable.dtype)
    return dtype != dtype.base_dtype


def _variables(pairs, others=()):
    return [v for pair in pairs for v in pair] + list(others)


def _run_if(predicate, then, refs=False, captures=()):
    """Run ``then()`` when ``predicate`` holds; a bool tensor says whether it ran.

    tf.switch_case (public since TF 1.14) builds the functional Case op even in a
    TF 1 graph. tf.cond there builds v1 control flow, a Switch per captured
    variable that executes, dead, on every step, a cost the functional op does not
    have (benchmarks/RESULTS.md, "Design notes from measurements"). Eagerly it just
    calls the chosen branch.

    With ``refs`` (``then`` captures TF1 ref variables, which standalone Keras 2.2
    makes, see ``_captures_refs``) the functional op cannot take them (TypeError from
    the branch's Assign); v1 tf.cond can, at the cost above. ``captures``: the
    variables ``then`` uses (see ``_switch_case``).
    """
    if refs:
        return tf.compat.v1.cond(predicate, then, _nothing)
    return _switch_case(tf.cast(predicate, tf.int32), [_nothing, then], captures=captures)


def _switch_case(index, branches, default=None, captures=()):
    """tf.switch_case, kept a function call when the graph runs (issue #22).

    TF's graph optimization (measured on TF 1.15 and 2.15) lowers a functional Case op
    to a Switch per input with every branch's ops inlined, and those run dead on every
    step that takes no branch: ~11 (session) to ~15 (tf.function) nodes per weight at a
    step that does not sync (tests/test_step_structure.py).
    The op's ``_lower_using_switch_merge`` attribute (the switch TF's lowering pass
    reads) keeps the Case a call of the chosen branch only. In a ``tf.function`` it
    also runs faster so (TF 2.15 and tf-keras on TF 2.21, 82 Dense layers:
    benchmarks/case_lowering.py, benchmarks/RESULTS.md).

    Only where the variables the branches use (``captures``) are on one device: an
    unlowered Case is placed with all its resource inputs, so under a tf.distribute
    strategy (TF 2.15: "Cannot place the graph because a reference or resource edge
    connects colocation groups with incompatible assigned devices", MirroredStrategy on
    two CPUs) or with weights on two devices it cannot run; lowered, each Switch goes
    with its own variable.
    """
    graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
    before = len(graph.get_operations()) if graph is not None else 0
    out = tf.switch_case(index, branches, default=default)
    if graph is not None and _on_one_device(captures):
        for op in graph.get_operations()[before:]:
            if op.type in ("Case", "StatelessCase"):
                op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))
    return out


def looked_up_by_name(variables, captures):
    """``variables`` as a branch of the step uses them: call it where the step is built,
    outside the branch, and what it returns inside the branch. Each variable the branch
    can find by its name (``_names``) is found so, the others are captured. ``captures``:
    every variable the branches use. For Keras 3 on TensorFlow's ``LookaheadOptimizer``
    (``native.keras3_tensorflow``), whose slow copies are named."""
    find = _finder(captures)
    names = [find(variable) for variable in variables]
    return lambda: [_reached_one(v, where) for v, where in zip(variables, names)]


def _names(pairs, captures):
    """Where a branch of the step finds each variable of the (fast, slow) pairs by its
    shared name, a (container, shared name, device) each, or None: captured. Decided
    where the step is built, outside its branches (whose graphs are functions).

    A captured variable is an input of the branch op (Case), so every step that does
    not sync would still hand it over (issue #22; benchmarks/case_inputs.py,
    benchmarks/RESULTS.md). A branch finds a variable by name with a ``VarHandleOp`` of
    its own: a TF 1 graph's resource variables (the resource its session's device holds
    under the variable's shared name) and the hook family's slow copies
    (``named_variables``). Not the weights of a ``tf.function`` (TF 2 eager): Keras makes
    them anonymous resources, which only their handle reaches. A TF 1 ref variable
    (standalone Keras 2.2) is found as its graph's ``VariableV2`` finds it, by the shared
    name it defaults to, its op's name (``_RefFoundByName``). Not across devices
    (``captures``, every variable the branches use): the branch looks on its own. Not
    in a step XLA compiles (``jit_compile=True``): tf2xla has no ``VarHandleOp``
    ("Detected unsupported operations", TF 2.15).
    """
    find = _finder(captures)
    return [(find(fast), find(slow)) for fast, slow in pairs]


def _finder(captures):
    if not _on_one_device(captures) or _compiled_by_xla():
        return lambda variable: None
    return _name


def _name(variable):
    if tf.executing_eagerly() or tf.compat.v1.get_default_graph().building_function:
        # A tf.function or eagerly (TF 2): only the hook family's slow copies have a name.
        # Imported here: TF 1.14 has no BaseResourceVariable to make them with.
        from . import named_variables
        named = named_variables.shared_name(variable)
        return None if named is None else ("", named, variable.device)
    if _is_ref(variable):
        op = variable.op
        if op.type not in ("VariableV2", "Variable"):
            return None
        return op.get_attr("container"), op.get_attr("shared_name") or op.name, op.device
    op = getattr(getattr(variable, "handle", None), "op", None)
    if op is None or op.type != "VarHandleOp" or not op.get_attr("shared_name"):
        return None
    return op.get_attr("container"), op.get_attr("shared_name"), op.device


def _captures_refs(pairs, names):
    """Whether a branch of the step captures a TF 1 ref variable, which the functional
    Case cannot take (TypeError from the branch's Assign): one not found by name
    (``_names``: variables on more than one device, or a step XLA compiles). Only
    standalone Keras 2.2 makes ref variables, and it refuses ``optimizer_state`` other
    than "keep" (``graph._standalone.attach``), so no ref slot of its optimizer reaches a
    branch."""
    return any(where is None and _is_ref(variable)
               for pair, pair_names in zip(pairs, names)
               for variable, where in zip(pair, pair_names))


def _reached(pairs, names):
    """The (fast, slow) pairs as a branch of the step uses them, built inside it: each
    variable found by its name in ``names`` (``_names``), or captured."""
    return [(_reached_one(fast, fast_where), _reached_one(slow, slow_where))
            for (fast, slow), (fast_where, slow_where) in zip(pairs, names)]


def _reached_one(variable, where):
    if where is None:
        return variable
    return (_RefFoundByName if _is_ref(variable) else _FoundByName)(variable, *where)


class _FoundByName(object):
    """A resource variable as a function finds it by its shared name, for ``tf_rule``
    (reads, ``assign``, ``assign_add``; see ``_names``)."""

    def __init__(self, variable, container, shared_name, device):
        self.dtype = tf.as_dtype(variable.dtype).base_dtype
        with tf.device(device):
            self.handle = self._look_up(variable.shape, container, shared_name)

    def _look_up(self, shape, container, shared_name):
        return tf.raw_ops.VarHandleOp(dtype=self.dtype, shape=shape, container=container,
                                      shared_name=shared_name)

    def read_value(self):
        return tf.raw_ops.ReadVariableOp(resource=self.handle, dtype=self.dtype)

    def __sub__(self, other):
        return self.read_value() - other.read_value()

    def assign_add(self, delta):
        # A TF 1 graph orders ops by their data only: the value returned is read after the add.
        with tf.control_dependencies([tf.raw_ops.AssignAddVariableOp(resource=self.handle,
                                                                      value=delta)]):
            return self.read_value()

    def assign(self, value):
        return tf.raw_ops.AssignVariableOp(resource=self.handle, value=value)


class _RefFoundByName(_FoundByName):
    """A TF 1 ref variable as a function finds it: a ``VariableV2`` op of the same shared
    name and shape looks the graph's variable up in its session's resource manager
    rather than make one (TF 1.14, 1.15)."""

    def _look_up(self, shape, container, shared_name):
        return tf.raw_ops.VariableV2(shape=shape, dtype=self.dtype, container=container,
                                     shared_name=shared_name)

    def read_value(self):
        return tf.identity(self.handle)

    def assign_add(self, delta):
        # The ref it returns is read after the add.
        return tf.identity(tf.compat.v1.assign_add(self.handle, delta))

    def assign(self, value):
        return tf.compat.v1.assign(self.handle, value)


# A captured weight minus a slow copy found by name (a tf.function's sync) reads the copy.
tf.register_tensor_conversion_function(
    _FoundByName, lambda found, dtype=None, name=None, as_ref=False: found.read_value())


def _compiled_by_xla():
    # tf.function(jit_compile=True) traces inside an XLA control flow context, which
    # its branches' graphs inherit (TF 2.15, 2.21); TF 1's xla.compile too.
    graph = tf.compat.v1.get_default_graph()
    return (not tf.executing_eagerly()
            and control_flow_util.GraphOrParentsInXlaContext(graph))


def _on_one_device(variables):
    if tf_rule.has_strategy():
        return False
    return len(set(getattr(v, "device", "") or "" for v in variables)) <= 1


def _grouped(ops):
    # Both branches return a bool "did it run" tensor of one structure; the
    # update ops run as its control dependencies.
    with tf.control_dependencies(ops):
        return tf.constant(True)


def _nothing():
    return tf.constant(False)
