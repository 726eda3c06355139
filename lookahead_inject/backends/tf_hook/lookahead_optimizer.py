"""``LookaheadOptimizer`` on Keras 2: tf.keras on TF 2.0 - 2.15, and tf-keras (TF 2.16+ with
TF_USE_LEGACY_KERAS=1), for loops that never call ``compile`` and for code that used
``tfa.optimizers.Lookahead``.

The same state and step as ``inject`` on these Kerases (``tf_sync.LookaheadVariables``
around the inner optimizer's ``apply_gradients``: ``_optimizer_hook.lookahead_step``),
entered through the optimizer's own ``apply_gradients`` instead of a hook on a compiled
model's optimizer. It is a legacy Keras optimizer (``OptimizerV2``, as tfa's Lookahead
and Keras 2's own ``LossScaleOptimizer`` are), so every Keras 2 takes it in ``compile``
and wraps it in a ``LossScaleOptimizer`` under ``mixed_float16``; its inner optimizer may
be a legacy one or, from TF 2.11, a new one. The slow copies are its slots and the step
count its weight, so TF checkpoints (``save_weights``, ``ModelCheckpoint``,
``BackupAndRestore``, SavedModel) and ``.h5`` files carry them as any optimizer's state.
"""

import contextlib

import tensorflow as tf

from ... import arguments
from ...environment import keras_2_behind_tf_keras
from ...errors import InvalidArgumentError, UnsupportedEnvironmentError
from ..common import named_variables, optimizer_slots
from ..common.optimizer_chain import check_no_loss_scale_inside, passed_to_inner
from ..common.tf_checkpoint import NotCheckpointed
from ..common.tf_sync import LookaheadVariables
from ._optimizer_hook import EagerStore, lookahead_step, not_converted

keras, _ = keras_2_behind_tf_keras()

#: The legacy optimizer base (``keras.optimizers.legacy`` from TF 2.9; before, the only one).
_LEGACY = getattr(keras.optimizers, "legacy", keras.optimizers).Optimizer
#: The optimizers it wraps: legacy ones, and the new ones of TF 2.11+ (experimental in
#: TF 2.9 / 2.10).
_INNER_CLASSES = tuple({_LEGACY, keras.optimizers.Optimizer} | set(
    c.Optimizer for c in [getattr(keras.optimizers, "experimental", None)]
    if c is not None and hasattr(c, "Optimizer")))

#: The base optimizer's arguments, with their defaults: set on the inner optimizer.
_INNER_ONLY = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "decay": 0.0,
               "lr": None, "learning_rate": None, "gradient_aggregator": None,
               "gradient_transformers": None}

#: Slot names of the slow and the momentum copies (names of their own: an .h5 file keys
#: the optimizer's weights by name, and SGD's slot is "momentum" too).
_SLOTS = {"slow": "lookahead_slow", "momentum": "lookahead_momentum"}


def _serializable(cls):
    # register_keras_serializable is TF 2.1+; TF 2.0 finds custom classes by name.
    register = getattr(keras.utils, "register_keras_serializable", None)
    if register is not None:
        return register(package="lookahead_inject")(cls)
    keras.utils.get_custom_objects()[cls.__name__] = cls
    return cls


class _SlotStore(EagerStore):
    """The slow (and momentum) copies as the optimizer's slots: checkpointed relative to
    their weights, in its ``weights`` (``.h5``), placed as Keras places slots. A slow copy
    starts equal to its weight's value when it is made: at the trace of the first step
    that trains the weight (a checkpoint's restore overrides that)."""

    def __init__(self, optimizer):
        super().__init__(None, lambda weight: weight, NotCheckpointed())
        self.optimizer = optimizer

    def make_slow(self, weight, kind="slow"):
        # Named: the step's branches find them by name, not as inputs of every step.
        with tf.init_scope(), named_variables.made_named():
            return self.optimizer.add_slot(weight, _SLOTS[kind],
                                           initializer=weight if kind == "slow" else "zeros")


@_serializable
class LookaheadOptimizer(_LEGACY):
    """Lookahead (Zhang et al. 2019) around a Keras 2 optimizer.

    The inner optimizer takes the fast steps. A slow copy of every weight starts
    equal to it at the first step that trains it; after fast steps k, 2k, 3k, ...:
    ``slow <- slow + alpha * (fast - slow)``, then ``fast <- slow``. A step that
    leaves a weight out (no gradient) neither writes it nor forgets its slow copy.
    ``optimizer_state`` ("keep", "reset", "pullback") is what a sync does to the inner
    optimizer's own state, as with ``inject``. tfa's argument names ``sync_period``
    (k) and ``slow_step_size`` (alpha) are accepted too.

    ``compile(optimizer=LookaheadOptimizer(SGD(0.1)))`` trains as
    ``compile(optimizer=SGD(0.1))`` followed by ``inject(model)``; it also serves
    ``optimizer.apply_gradients`` in a loop of one's own.

    >>> import numpy as np, tensorflow as tf
    >>> from lookahead_inject import LookaheadOptimizer
    >>> weight = tf.Variable(np.zeros(2, "float32"))
    >>> optimizer = LookaheadOptimizer(tf.keras.optimizers.SGD(1.0), k=2, alpha=0.5)
    >>> for _ in range(2):   # two fast steps of -1, then the sync halves the way
    ...     _ = optimizer.apply_gradients([(tf.ones(2), weight)])
    >>> weight.numpy().tolist()
    [-1.0, -1.0]
    """

    is_lookahead_optimizer = True     # optimizer_chain.IS_LOOKAHEAD: inject refuses it
    # TF 2.2 / 2.3 fit aggregates the gradients itself when the optimizer says it can,
    # then passes experimental_aggregate_gradients=False (handed on to the inner one).
    _HAS_AGGREGATE_GRAD = True

    def __init__(self, optimizer, k=None, alpha=None, optimizer_state="keep",
                 sync_period=None, slow_step_size=None, name="LookaheadOptimizer", **kwargs):
        if not _eager_outside_functions():
            # Keras' graph-mode path (get_updates) trained it off inject's trajectory on
            # TF 2.15; inject serves graph mode (tests/test_lookahead_optimizer_keras2.py).
            raise UnsupportedEnvironmentError(
                "LookaheadOptimizer on Keras 2 trains with eager execution (TF 2's default); "
                "this process runs TF 1 graph mode (tf.compat.v1.disable_eager_execution). "
                "Compile with the inner optimizer and add Lookahead to the model instead: "
                "lookahead_inject.inject(model, k=5, alpha=0.5).")
        arguments.checked_wrapper_arguments(kwargs, _INNER_ONLY)
        k, alpha = arguments.k_and_alpha(k, alpha, sync_period, slow_step_size)
        optimizer_state = arguments.checked_optimizer_state(optimizer_state)
        inner = _inner(optimizer)
        optimizer_slots.check(inner, optimizer_state)
        super().__init__(name)
        self._inner = inner
        # A checkpoint dependency (OptimizerV2 tracks no attributes by itself), under the
        # name Keras 3's LookaheadOptimizer and LossScaleOptimizer give it.
        self._track_trackable(inner, "inner_optimizer")
        self.k, self.alpha, self.optimizer_state = k, alpha, optimizer_state
        self._lookahead = None

    @property
    def inner_optimizer(self):
        return self._inner

    def _lookahead_of(self, weights):
        """The Lookahead state (made at the first call), with slow copies of ``weights``."""
        if self._lookahead is None:
            with _scope(self):
                step = self.add_weight("lookahead_step", shape=[], dtype=tf.int64,
                                       trainable=False, initializer="zeros",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # In `weights` (.h5 files) as OptimizerV2 puts its own `iterations` there.
            self._weights.append(step)
            self._lookahead = LookaheadVariables(step, self.k, self.alpha, _SlotStore(self),
                                                 self.optimizer_state)
        self._lookahead.add_current(weights)
        return self._lookahead

    # In a user's tf.function AutoGraph would convert this too (TF 2.0 fails on the
    # sync's generator expressions); its branches are tf.switch_case already.
    @not_converted
    def apply_gradients(self, grads_and_vars, name=None, **kwargs):
        grads_and_vars = list(grads_and_vars)
        # A weight without a gradient is no part of this step: not written, its slow
        # copy kept (the inner optimizer would leave it out too, with a warning).
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        inner = self._inner
        if not pairs:       # the inner optimizer's own error for it
            return inner.apply_gradients(grads_and_vars, name=name, **kwargs)
        trained = [v for _, v in pairs]
        with tf.init_scope():
            lookahead = self._lookahead_of(trained)
        return lookahead_step(lookahead, trained,
                              lambda: inner.apply_gradients(pairs, name=name, **kwargs),
                              optimizer=inner)

    def _clip_gradients(self, grads):
        # TF 2.2 / 2.3 fit clips with the compiled optimizer's _clip_gradients before
        # apply_gradients, which does not clip: the inner optimizer's clipnorm applies.
        clip = getattr(self._inner, "_clip_gradients", None)
        return clip(grads) if clip is not None else grads

    def _create_all_weights(self, var_list):
        # What Keras' .h5 loading calls before it sets the optimizer's weights: the inner
        # optimizer's, then the step and the slow copies, in the order training made them.
        inner = self._inner
        if isinstance(inner, _LEGACY):
            inner._create_all_weights(var_list)
        else:
            inner.build(var_list)
        with tf.init_scope():
            self._lookahead_of(list(var_list))

    @property
    def weights(self):
        return self._weights + _variables(self._inner)

    def variables(self):
        return self.weights

    iterations = passed_to_inner("iterations")
    learning_rate = passed_to_inner("learning_rate")
    # Keras 2's callbacks (ReduceLROnPlateau, LearningRateScheduler) read and set `lr`.
    lr = learning_rate

    def get_config(self):
        return {"name": self._name, "inner_optimizer": keras.optimizers.serialize(self._inner),
                "k": self.k, "alpha": self.alpha, "optimizer_state": self.optimizer_state}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.optimizers.deserialize(config.pop("inner_optimizer"),
                                             custom_objects=custom_objects)
        return cls(inner, **config)


def _inner(optimizer):
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, LookaheadOptimizer) or not isinstance(optimizer, _INNER_CLASSES):
        raise InvalidArgumentError(
            "LookaheadOptimizer here wraps a Keras {} optimizer (e.g. {}.optimizers.SGD(0.1) "
            "or 'adam') that is not a Lookahead itself; got {}.{}".format(
                keras.__version__, keras.__name__.split(".")[0],
                type(optimizer).__name__, _other_keras_hint(optimizer)))
    if getattr(optimizer, "use_ema", False):
        # Keras 2's fit writes the averages into the weights only for an optimizer of the
        # new kind (finalize_variable_values), which this legacy wrapper is not.
        raise InvalidArgumentError(
            "LookaheadOptimizer on Keras 2 cannot wrap an optimizer with use_ema=True: "
            "Keras 2's fit would never write the averages into the weights. Compile with the "
            "inner optimizer and call lookahead_inject.inject(model), which keeps its EMA.")
    check_no_loss_scale_inside(optimizer)
    return optimizer


def _other_keras_hint(optimizer):
    package = type(optimizer).__module__.split(".")[0]
    if package == "keras" and keras.__name__ == "tf_keras":
        return (" It is a Keras 3 optimizer, while TF_USE_LEGACY_KERAS=1 makes "
                "lookahead_inject.LookaheadOptimizer tf-keras' (the Keras of tf.keras here). "
                "Build the model and optimizer with tf.keras, or unset TF_USE_LEGACY_KERAS.")
    return ""


def _variables(optimizer):
    # The legacy optimizers' `weights`; the new ones' `variables` (a method before TF 2.11).
    if isinstance(optimizer, _LEGACY):
        return list(optimizer.weights)
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def _scope(optimizer):
    # Where OptimizerV2 makes its own variables: in the strategy it was created under.
    scope = getattr(optimizer, "_distribution_strategy_scope", None)
    return scope() if scope is not None else contextlib.nullcontext()


def _eager_outside_functions():
    # tf.compat.v1.executing_eagerly_outside_functions is TF 2.1+; on TF 2.0 the optimizer
    # is made outside a tf.function (as Keras' guides make it).
    eager = getattr(tf.compat.v1, "executing_eagerly_outside_functions", tf.executing_eagerly)
    return eager()
