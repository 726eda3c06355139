"""What the Keras 3 backends without TensorFlow (JAX, PyTorch) share: Lookahead kept
in the optimizer's own variables, updated inside its ``apply``.

On JAX the training step is a pure function of its state: Keras threads the
model's and the optimizer's variables through it (``stateless_apply``) and writes
them back only when asked (``jax_state_sync``). A variable outside that state would
be read once at trace time and its updates dropped. So the slow weights, the step
counter and the "pending" flags are variables of the optimizer that takes the step
(the inner one of a LossScaleOptimizer), added with ``add_variable_from_reference``
/ ``add_variable`` when it is built (on JAX the slow copies of up to 8 weights of one
dtype share an array, ``Segment``: each array of the step's state costs dispatch),
and every training path (fit, train_on_batch, a custom ``train_step`` calling
``apply`` or ``stateless_apply``) goes through its ``apply``, which this module
wraps (``inject``), or which ``LookaheadOptimizer`` is (``lookahead_optimizer``: the
same state and step, in an optimizer of its own). PyTorch's variables are stateful, but
the same place works there and keeps one design.

The optimizer's file sections (``.keras``, ``.weights.h5``) leave these variables
out, so files written with and without Lookahead load into each other with the
optimizer's own state (Keras skips all of it, with only a warning, when the
variable counts differ). The Lookahead state has a section of its own (``common.keras3_files``).

Before the optimizer is built, and between a ``compile()`` and the new
optimizer's build, the values wait in ``NumpyHolder``s; each build moves them into
variables of the optimizer (``move_into_optimizer``).

When a slow copy is taken: a weight is pending (its flag in the ``pending`` vector,
one per trained weight, is 1; at step 0 every weight is) until the first step that
trains it, which takes its copy from its value before the update. A weight is
pending when it is new to the optimizer, and again when a ``compile()`` finds it
frozen (``compiled``). A step that leaves a weight out leaves its weight, its copy
and its flag alone, at a sync too.

The per-platform part (``Platform``) decides how a step chooses its branch: JAX
inside the traced step (while loops of 0 or 1 trips, which leave the weights in
place when they do not run), PyTorch in Python from host-side copies of the counter
and the flags (no device-to-host read per step).
"""

import contextlib

import numpy as np
from keras import ops

from ...rule import PULLBACK, RESET, ops_rule
from .. import Backend
from ..common import keras3_files, lookahead_state, optimizer_slots
from ..common.attachment import Attachment, all_or_nothing, follow_compile, trainable_weights
from ..common.optimizer_chain import chain, check_not_hooked, innermost

STEP, PENDING = ("step",), ("pending",)


class NumpyHolder(object):
    """A value kept in Python while no optimizer variable holds it."""

    def __init__(self, value):
        self.value = np.asarray(value)


class Segment(object):
    """One weight's slow copy inside a packed array (``PACKED`` platforms): its slice of
    ``packed``, a variable holding the slow copies of several weights of one dtype,
    which is ``NativeLookahead.packed[position]``."""

    def __init__(self, packed, position, offset, shape):
        self.packed, self.position = packed, position
        self.offset, self.shape = offset, tuple(shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.dtype = packed.dtype

    @property
    def value(self):
        return self.of(self.packed.value)

    def of(self, packed_value):
        """This weight's slow copy in a value of the packed array."""
        return ops.reshape(ops.slice(packed_value, (self.offset,), (self.size,)), self.shape)

    def assign(self, value):
        self.packed.assign(_laid_end_to_end(self.packed.value, [(self, value)]))


class Platform(object):
    """What differs between JAX and PyTorch (``keras3_jax._Jax``, ``keras3_torch._Torch``):
    how a step chooses its branch, and how values come to the host."""

    #: How many weights' slow copies (of one dtype) share an array (``Segment``); 0: none,
    #: each copy is a variable shaped like its weight.
    PACKED = 0
    #: Where PACKED: a weight of at least this many elements has an array of its own.
    ALONE = 0

    @staticmethod
    def making_variables():
        """A context around making the state's variables and setting their values
        (TensorFlow: ``keras3_tensorflow``)."""
        return contextlib.nullcontext()

    @staticmethod
    def sync_state(model):
        """Make the variables hold the values training computed (JAX keeps them in the
        trainer's state during fit)."""

    @staticmethod
    def written(lookahead):
        """The counter or the flags were written from outside the step: refresh the host
        copies (``NativeLookahead.host_step`` / ``host_waiting``)."""

    @staticmethod
    def hook_model(model, lookahead, undo):
        """Set what else the platform needs on the model (recorded in ``undo``)."""

    @staticmethod
    def to_numpy(value):
        raise NotImplementedError

    @staticmethod
    def retrace(model):
        """Make Keras build its train function again, with the hooked ``apply`` in it."""
        model.train_function = None

    @staticmethod
    def wrap_step(apply):
        """``apply`` as the optimizer's ``apply`` (PyTorch: kept out of torch.compile)."""
        return apply

    @staticmethod
    def step(lookahead, optimizer, original_apply, grads, trainable_variables):
        """The optimizer's ``apply`` with Lookahead: the start, ``original_apply``, the count
        and the sync."""
        raise NotImplementedError


class NativeLookahead(lookahead_state.LookaheadState):
    """One model's Lookahead on Keras 3 / JAX or PyTorch."""

    def __init__(self, model, k, alpha, optimizer_state, platform):
        self.model, self.k, self.alpha = model, k, alpha
        self.optimizer_state, self.platform = optimizer_state, platform
        self._holders = {STEP: NumpyHolder(np.int32(0)),
                         PENDING: NumpyHolder(np.zeros(0, np.int32))}
        #: The weights the optimizer holding the state trains, in its order (the ``pending``
        #: order).
        self.trained = []
        self._position = {}        # id of a trained weight -> its index in `trained`
        #: The weights the last compile() made trainable (None: none since inject, or
        #: the model was not built then).
        self.compiled_trainable = None
        self.optimizer = None      # the optimizer whose variables hold the state
        self._in_step = (None, None)
        self._ours = []            # the variables added to `optimizer`
        self.packed = []           # PACKED platforms: the arrays of the slow copies
        # Host-side copies the platform keeps in step with the variables (its ``written``),
        # so that a step needs no device-to-host read: the ids of the trained weights
        # whose slow copies a step takes (both), the step count (PyTorch).
        self.host_waiting = frozenset()
        self.host_step = 0
        #: JAX: a step runs inside the train function that took the start before it.
        self.in_train_function = False

    # -- what lookahead.py reads -----------------------------------------------

    @property
    def step(self):
        return self._holders[STEP]

    @property
    def pending(self):
        """Per trained weight, 1 while it awaits its slow copy (see the module's doc)."""
        return self._holders[PENDING]

    def waiting(self, step, pending):
        """Ids of the trained weights a step that trains them takes the slow copies of,
        from values of ``step`` and ``pending``."""
        return frozenset(id(w) for w, flag in zip(self.trained, pending) if flag or not step)

    def pending_flags(self, waiting):
        """The ``pending`` value for the ids ``waiting``."""
        return np.asarray([id(w) in waiting for w in self.trained], np.int32)

    def positions(self, weights):
        """Indices of ``weights`` (trained ones) in ``trained``."""
        return [self._position[id(w)] for w in weights]

    def taking_in_step(self, weights, count):
        """In a traced step of ``weights``, ``count`` the step count before it: per weight, 1
        where it takes its slow copy now (pending, or no step taken yet); and the value of
        ``pending`` after the step."""
        waiting = ops.where(ops.equal(count, 0), ops.ones_like(self.pending.value),
                            self.pending.value)
        positions = self.positions(weights)
        in_step = np.zeros(len(self.trained), np.int32)
        in_step[positions] = 1
        return ops.take(waiting, positions), waiting * (1 - in_step)

    def slow_for(self, weight):
        return self._holder(("slow", id(weight)), weight)

    def momentum_for(self, weight):
        return self._holder(("momentum", id(weight)), weight)

    def _holder(self, key, weight):
        if key not in self._holders:
            self._holders[key] = NumpyHolder(np.zeros(tuple(weight.shape), _dtype(weight)))
        return self._holders[key]

    def mark_trained(self, weights):
        """``weights`` hold valid slow copies (set from outside): none is pending any more."""
        for weight in weights:
            self.slow_for(weight)
        if self.optimizer is None:
            self._set_trained(weights)
        self.write([self.pending], [self.pending_flags(())])

    def _set_trained(self, weights):
        self.trained = list(weights)
        self._position = dict((id(w), i) for i, w in enumerate(self.trained))

    def compiled(self, trainable):
        """A ``compile()`` made ``trainable`` the model's trainable weights (None: it
        could not tell, the model not being built): a trained weight it found frozen
        takes a new slow copy at the next step that trains it."""
        self.compiled_trainable = trainable
        if trainable is None or not self.trained:
            return
        kept = set(id(w) for w in trainable)
        step, pending = self.read([self.step, self.pending])
        waiting = self.waiting(step, pending) | set(
            id(w) for w in self.trained if id(w) not in kept)
        self.write([self.pending], [self.pending_flags(waiting)])

    # -- values now ------------------------------------------------------------

    def read(self, holders):
        self.platform.sync_state(self.model)
        return [np.array(h.value) if isinstance(h, NumpyHolder)
                else self.platform.to_numpy(h.value) for h in holders]

    def write(self, holders, values):
        self.platform.sync_state(self.model)
        for holder, value in zip(holders, values):
            if isinstance(holder, NumpyHolder):
                holder.value = np.asarray(value)
            else:
                holder.assign(np.asarray(value, _dtype(holder)))
        self.platform.written(self)

    def taken(self):
        """The weights the last compile() made trainable whose slow copies are taken (what
        ``Lookahead.sync()`` pulls and ``get_state()`` reads), in the optimizer's order."""
        trainable = (self.compiled_trainable if self.compiled_trainable is not None
                     else trainable_weights(self.model))
        chosen = set(id(w) for w in trainable)
        step, pending = self.read([self.step, self.pending])
        waiting = self.waiting(step, pending)
        return [w for w in self.trained if id(w) in chosen and id(w) not in waiting]

    def sync_now(self):
        """``Lookahead.sync()``: the in-step rule (``ops_rule.pull``), now, on
        the weights the last compile() made trainable that hold slow copies."""
        weights = self.taken()
        if not weights:
            return
        slow = [self.slow_for(w) for w in weights]
        values = [ops.convert_to_tensor(v) for v in self.read(weights + slow)]
        pulled = ops_rule.pull(values[:len(weights)], values[len(weights):], self.alpha)
        pulled = [self.platform.to_numpy(p) for p in pulled]
        self.write(weights + slow, pulled + pulled)

    def repacked(self, packed_values, weights, slow_values):
        """``packed_values`` with the slow copies of ``weights`` set to ``slow_values``."""
        return replaced_in_packed([self.slow_for(w) for w in weights], slow_values,
                                  packed_values)

    # -- the optimizer's variables ---------------------------------------------

    def move_into_optimizer(self, optimizer):
        """Move the state into variables of the built ``optimizer`` (the innermost one)."""
        if self.optimizer is optimizer:
            return
        self.move_out_of_optimizer()
        weights = list(optimizer._trainable_variables)
        new = set(id(w) for w in lookahead_state.joining(self.trained, weights))
        flags = dict(zip((id(w) for w in self.trained), self.pending.value))
        keys = [STEP, PENDING] + [("slow", id(w)) for w in weights]
        sources = [None, None] + list(weights)
        if self.optimizer_state == PULLBACK:
            keys += [("momentum", id(w)) for w in weights]
            sources += list(weights)
        for key, weight in zip(keys, sources):
            if weight is not None:
                self._holder(key, weight)
        values = [self._holders[key].value for key in keys]
        values[1] = np.asarray([1 if id(w) in new else flags[id(w)] for w in weights],
                               np.int32)
        packed = self.platform.PACKED and bool(weights)
        per_weight = [i for i, key in enumerate(keys) if i >= 2 and
                      not (packed and key[0] == "slow")]
        with self.platform.making_variables():
            made = [optimizer.add_variable((), initializer="zeros", dtype="int32",
                                           name="lookahead_step"),
                    optimizer.add_variable((len(weights),), initializer="zeros", dtype="int32",
                                           name="lookahead_pending")]
            made += [optimizer.add_variable_from_reference(
                sources[i], name="lookahead_" + keys[i][0]) for i in per_weight]
            for variable, i in zip(made, [0, 1] + per_weight):
                variable.assign(np.asarray(values[i], _dtype(variable)))
                self._holders[keys[i]] = variable
        self.packed = []
        if packed:
            self._pack(optimizer, weights, values[2:2 + len(weights)])
            made += self.packed
        self.optimizer, self._in_step = optimizer, (None, None)
        self._set_trained(weights)
        self._ours = made
        self.platform.written(self)

    def _pack(self, optimizer, weights, values):
        """The slow copies of ``weights`` (their ``values``) packed per dtype, at most
        ``platform.PACKED`` to an array, and a weight of ``platform.ALONE`` elements or more
        in an array of its own: every array in a JAX step's state costs its dispatch, every
        copy in one array costs XLA's compile of the sync more, and a big weight costs the
        sync of a shared array more than its own array's dispatch (benchmarks/RESULTS.md,
        "Design notes from measurements")."""
        groups, most, alone = {}, self.platform.PACKED, []
        for i, weight in enumerate(weights):
            if _size(weight) >= self.platform.ALONE:
                alone.append((str(_dtype(weight)), [i]))
            else:
                groups.setdefault(str(_dtype(weight)), []).append(i)
        arrays = alone + [(dtype, indices[start:start + most])
                          for dtype, indices in sorted(groups.items())
                          for start in range(0, len(indices), most)]
        for dtype, indices in arrays:
            size = sum(_size(weights[i]) for i in indices)
            array = optimizer.add_variable((size,), initializer="zeros", dtype=dtype,
                                           name="lookahead_slow_" + dtype)
            array.assign(np.concatenate([np.asarray(values[i], dtype).reshape(-1)
                                         for i in indices]))
            offset = 0
            for i in indices:
                segment = Segment(array, len(self.packed), offset, weights[i].shape)
                self._holders[("slow", id(weights[i]))] = segment
                offset += segment.size
            self.packed.append(array)

    def move_out_of_optimizer(self):
        """Take the state out of the optimizer's variables (a new optimizer comes, or
        Lookahead is removed), into ``NumpyHolder``s."""
        if self.optimizer is None:
            return
        self.platform.sync_state(self.model)
        ours = set(id(v) for v in self._ours)
        for key, holder in list(self._holders.items()):
            if id(holder) in ours or isinstance(holder, Segment):
                self._holders[key] = NumpyHolder(self.platform.to_numpy(holder.value))
        # Keras 3 keeps an optimizer's variables in the plain list its tracker fills.
        self.optimizer._variables[:] = [v for v in self.optimizer._variables
                                        if id(v) not in ours]
        self.optimizer, self._ours = None, []
        self.packed = []

    def own_variables(self, optimizer):
        ours = set(id(v) for v in self._ours)
        return [v for v in optimizer.variables if id(v) not in ours]

    # -- the training step -----------------------------------------------------

    def variables_in_step(self, passed=None):
        """(weights, slow, momentum copies, optimizer slots, step, pending) variables, for
        the weights ``passed`` to apply (None: all the optimizer was built on)."""
        # map, not a generator: a generator is one Python call per weight on every step
        # (issue #22, tests/test_step_structure.py counts them).
        key = None if passed is None else tuple(map(id, passed))
        if self._in_step[0] != key or self._in_step[1] is None:
            self._in_step = (key, self._variables_in_step(
                self.trained if passed is None else list(passed)))
        return self._in_step[1]

    def _variables_in_step(self, weights):
        slow = [self._holders[("slow", id(w))] for w in weights]
        momentum, slots = [], []
        if self.optimizer_state == PULLBACK:
            momentum = [self._holders[("momentum", id(w))] for w in weights]
            slots = [s for ws in optimizer_slots.slots_of(self.optimizer, weights) for s in ws]
        elif self.optimizer_state == RESET:
            slots = [s for ws in optimizer_slots.slots_of(self.optimizer, weights) for s in ws]
        return weights, slow, momentum, slots, self.step, self.pending

    def branch(self, starting, sync, weights):
        """The step's work on ``weights`` for one choice, as a function of values: (fast
        before the update, fast after, slow, momentum copies, slots) -> (fast, slow,
        momentum copies, slots). ``starting``: the ids whose slow copies it takes."""
        taking = [id(w) in starting for w in weights]
        alpha = self.alpha

        def run(operands):
            before, fast, slow, momentum, slots = operands
            slow = [b if take else s for b, s, take in zip(before, slow, taking)]
            if sync:
                fast = ops_rule.pull(fast, slow, alpha)
                slow = list(fast)
                momentum, slots = self.synced_slots(momentum, slots)
            return list(fast), slow, list(momentum), list(slots)
        return run

    def synced_slots(self, momentum, slots):
        """(momentum copies, optimizer slots) after a sync, as ``optimizer_state`` says."""
        if self.optimizer_state == RESET:
            slots = ops_rule.reset(slots)
        elif self.optimizer_state == PULLBACK:
            slots = ops_rule.pullback(slots, momentum, self.alpha)
            momentum = list(slots)
        return list(momentum), list(slots)

    def pulled_packed(self, weights, fast, packed_values):
        """(fast, packed values) after a sync of ``weights``, their slow copies packed
        (``pulled_into_segments``)."""
        return pulled_into_segments([self.slow_for(w) for w in weights], fast, packed_values,
                                    self.alpha)


def pulled_into_segments(segments, fast, packed_values, alpha):
    """(fast, packed values) after a sync of the weights whose values are ``fast`` and
    whose slow copies are ``segments`` of ``packed_values``. The rule runs once per packed
    array, against its weights laid end to end (a segment of a weight not in the step
    laid as it is, which the rule leaves unchanged), and each weight takes its segment of
    the result: XLA fuses that into one pass that writes the array in place, and compiles
    it faster than a pull and a dynamic update slice per weight (benchmarks/RESULTS.md,
    "Design notes from measurements")."""
    fast, packed_values = list(fast), list(packed_values)
    for j, pairs in _per_array(segments, range(len(segments))).items():
        laid = _laid_end_to_end(packed_values[j], [(segment, fast[i]) for segment, i in pairs])
        packed_values[j] = ops_rule.pull([laid], [packed_values[j]], alpha)[0]
        for segment, i in pairs:
            fast[i] = segment.of(packed_values[j])
    return fast, packed_values


def replaced_in_packed(segments, values, packed_values):
    """``packed_values`` with the slow copy in each of ``segments`` replaced by its value
    in ``values``: each array written as one concatenation of its pieces in order, the
    rest of it sliced out as it was (one write per array, which XLA compiles faster than a
    dynamic update slice per weight)."""
    packed_values = list(packed_values)
    for j, pairs in _per_array(segments, values).items():
        packed_values[j] = _laid_end_to_end(packed_values[j], pairs)
    return packed_values


def _per_array(segments, items):
    """The (segment, item) pairs of ``segments`` and ``items``, by packed array position."""
    placed = {}
    for segment, item in zip(segments, items):
        placed.setdefault(segment.position, []).append((segment, item))
    return placed


def _laid_end_to_end(packed_value, pairs):
    pieces, end = [], 0
    for segment, value in sorted(pairs, key=lambda pair: pair[0].offset):
        if segment.offset > end:
            pieces.append(ops.slice(packed_value, (end,), (segment.offset - end,)))
        pieces.append(ops.reshape(ops.cast(value, segment.dtype), (segment.size,)))
        end = segment.offset + segment.size
    size = int(packed_value.shape[0])
    if size > end:
        pieces.append(ops.slice(packed_value, (end,), (size - end,)))
    return pieces[0] if len(pieces) == 1 else ops.concatenate(pieces)


def update_applied(optimizer):
    """Called before ``optimizer``'s apply in a traced step: a function that says after it
    whether it updated the weights (1) or not (0). With ``gradient_accumulation_steps``
    an apply adds the gradients up and updates the weights on every n-th call only;
    ``iterations`` counts updates, so a call that leaves it unchanged was no step."""
    if not optimizer.gradient_accumulation_steps:
        return lambda: 1
    before = ops.convert_to_tensor(optimizer.iterations)
    return lambda: ops.cast(ops.not_equal(optimizer.iterations, before), "int32")


def _size(variable):
    return int(np.prod(tuple(variable.shape), dtype=np.int64))


def _dtype(variable):
    dtype = variable.dtype
    return np.dtype(dtype if isinstance(dtype, str) else getattr(dtype, "name", str(dtype)))


def check(model):
    check_not_hooked(model.optimizer, "apply")


def attach(model, k, alpha, optimizer_state, platform):
    """Hook the model's optimizer (and each one a later ``compile()`` brings); all or
    nothing."""
    optimizer_slots.check(model.optimizer, optimizer_state)
    lookahead = NativeLookahead(model, k, alpha, optimizer_state, platform)
    with all_or_nothing() as undo:
        hooks = _Hooks(model, lookahead, platform)
        # Before hook(): what it set before failing is taken back too.
        undo.add(hooks.unhook)
        hooks.hook()

        def rehook():
            hooks.hook()
            platform.retrace(model)
        # compile() may bring a new optimizer: the state moves to it at its build.
        follow_compile(model, undo,
                       lambda: lookahead.compiled(trainable_weights(model) if model.built
                                                  else None),
                       unhook=hooks.unhook, hook=rehook)
        undo.add(lambda: platform.retrace(model))
        platform.hook_model(model, lookahead, undo)
        platform.retrace(model)
        attachment = Attachment(model, lookahead, detach=undo.run)
    return attachment


def backend(platform, distribute):
    """The ``Backend`` of Keras 3 on ``platform``; its own files carry the state
    (``common.keras3_files``)."""
    def attach_(model, k, alpha, optimizer_state="keep"):
        return keras3_files.install(model, attach(model, k, alpha, optimizer_state, platform))
    return Backend(distribute=distribute, checkpoint_formats=keras3_files.FORMATS,
                   check=check, attach=attach_)


class _Hooks(object):
    """The instance attributes set on the model's optimizers: ``apply``, ``build`` and
    the file sections (``save_own_variables`` / ``load_own_variables``)."""

    def __init__(self, model, lookahead, platform):
        self.model, self.lookahead, self.platform = model, lookahead, platform
        self.set = []      # (object, attribute name)

    def hook(self):
        optimizer = self.model.optimizer
        check(self.model)
        optimizer_slots.check(optimizer, self.lookahead.optimizer_state)
        target = innermost(optimizer)
        lookahead, platform = self.lookahead, self.platform
        original_build, original_apply = target.build, target.apply

        def build_with_lookahead(variables):
            original_build(variables)
            lookahead.move_into_optimizer(target)

        def apply_with_lookahead(grads, trainable_variables=None):
            if not target.built:
                # A custom loop's first apply(grads, variables) builds the optimizer:
                # built here, so the state is in its variables before the step reads it.
                target.build(list(trainable_variables))
            return platform.step(lookahead, target, original_apply, grads, trainable_variables)

        self._set(target, "build", build_with_lookahead)
        self._set(target, "apply", platform.wrap_step(apply_with_lookahead))
        for wrapper in chain(optimizer):
            self._set(wrapper, "save_own_variables", _saver(lookahead, wrapper))
            self._set(wrapper, "load_own_variables", _loader(lookahead, wrapper))
        if target.built:
            lookahead.move_into_optimizer(target)

    def _set(self, owner, name, value):
        setattr(owner, name, value)
        self.set.append((owner, name))

    def unhook(self):
        self.lookahead.move_out_of_optimizer()
        while self.set:
            owner, name = self.set.pop()
            if name in vars(owner):
                delattr(owner, name)


def _saver(lookahead, optimizer):
    def save_own_variables(store):
        # As Keras 3's Optimizer.save_own_variables, without the Lookahead variables.
        for i, variable in enumerate(lookahead.own_variables(optimizer)):
            store[str(i)] = variable.numpy()
    return save_own_variables


def _loader(lookahead, optimizer):
    def load_own_variables(store):
        import warnings
        own = lookahead.own_variables(optimizer)
        if len(store.keys()) != len(own):
            # Keras 3's own words for a mismatch that is not Lookahead's doing.
            warnings.warn(
                "Skipping variable loading for optimizer '{}', because it has {} variables "
                "whereas the saved optimizer has {} variables.".format(
                    optimizer.name, len(own), len(store.keys())), stacklevel=2)
            return
        for i, variable in enumerate(own):
            variable.assign(store[str(i)])
    return load_own_variables


__all__ = ["attach", "check", "NativeLookahead", "trainable_weights"]
