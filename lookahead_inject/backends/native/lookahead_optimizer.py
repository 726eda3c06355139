"""``LookaheadOptimizer``: Lookahead as a Keras 3 optimizer (TensorFlow, JAX, PyTorch), for
loops that never call ``compile`` and for code that used ``tfa.optimizers.Lookahead``.

The same state as ``inject`` on Keras 3 (``_optimizer_variables.NativeLookahead``: the
slow copies, the step count and the pending flags in the inner optimizer's variables)
and the same step per platform (``keras3_jax``, ``keras3_torch``; on TensorFlow
``keras3_tensorflow``), entered through the optimizer's own ``apply`` instead of a hook
on a compiled model's optimizer. Because the state is the inner optimizer's variables,
``.keras`` files carry it, and ``keras.distribution`` lays it out, like any optimizer's.

It wraps its inner optimizer as Keras' ``LossScaleOptimizer`` does (``inner_optimizer``,
its config nested in ``get_config``); a loss-scale optimizer goes around it (Keras does
that itself for a ``mixed_float16`` policy), so a skipped step is not a Lookahead step.
"""

import importlib

import keras

from ... import arguments
from ...errors import InvalidArgumentError
from ..common import optimizer_slots
from ..common.optimizer_chain import check_no_loss_scale_inside, passed_to_inner
from ._optimizer_variables import NativeLookahead

#: The step of each Keras 3 backend: (module, its ``Platform`` class).
PLATFORMS = {"jax": ("keras3_jax", "_Jax"), "torch": ("keras3_torch", "_Torch"),
             "tensorflow": ("keras3_tensorflow", "_TensorFlow")}

#: The base optimizer's arguments, with their defaults: set on the inner optimizer.
_INNER_ONLY = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None,
               "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
               "ema_overwrite_frequency": None, "loss_scale_factor": None,
               "gradient_accumulation_steps": None}


def _platform():
    name = keras.backend.backend()
    if name not in PLATFORMS:
        raise InvalidArgumentError(
            "LookaheadOptimizer trains on Keras 3's tensorflow, jax and torch backends; "
            "Keras runs on {!r} here. Set KERAS_BACKEND before importing keras.".format(name))
    module, platform = PLATFORMS[name]
    return getattr(importlib.import_module("lookahead_inject.backends.native." + module),
                   platform)


@keras.saving.register_keras_serializable(package="lookahead_inject")
class LookaheadOptimizer(keras.optimizers.Optimizer):
    """Lookahead (Zhang et al. 2019) around a Keras 3 optimizer.

    The inner optimizer takes the fast steps. A slow copy of every weight starts
    equal to it at the first step that trains it; after fast steps k, 2k, 3k, ...:
    ``slow <- slow + alpha * (fast - slow)``, then ``fast <- slow``. A step that
    leaves a weight out (no gradient) neither writes it nor forgets its slow copy.
    ``optimizer_state`` ("keep", "reset", "pullback") is what a sync does to the inner
    optimizer's own state, as with ``inject``. tfa's argument names ``sync_period``
    (k) and ``slow_step_size`` (alpha) are accepted too.

    ``compile(optimizer=LookaheadOptimizer(SGD(0.1)))`` trains as
    ``compile(optimizer=SGD(0.1))`` followed by ``inject(model)``; it also serves
    ``optimizer.apply(grads, variables)`` and ``stateless_apply`` in a loop of one's
    own, and comes back from a ``.keras`` file with its state (the class is
    registered with Keras when this module is imported: ``from lookahead_inject
    import LookaheadOptimizer``).

    >>> import numpy as np, keras
    >>> from lookahead_inject import LookaheadOptimizer
    >>> weight = keras.Variable(np.zeros(2, "float32"))
    >>> optimizer = LookaheadOptimizer(keras.optimizers.SGD(1.0), k=2, alpha=0.5)
    >>> for _ in range(2):   # two fast steps of -1, then the sync halves the way
    ...     optimizer.apply([keras.ops.ones(2)], [weight])
    >>> keras.ops.convert_to_numpy(weight).tolist()
    [-1.0, -1.0]
    """

    is_lookahead_optimizer = True     # optimizer_chain.IS_LOOKAHEAD: inject refuses it

    def __init__(self, optimizer, k=None, alpha=None, optimizer_state="keep",
                 sync_period=None, slow_step_size=None, name=None, **kwargs):
        arguments.checked_wrapper_arguments(kwargs, _INNER_ONLY)
        k, alpha = arguments.k_and_alpha(k, alpha, sync_period, slow_step_size)
        optimizer_state = arguments.checked_optimizer_state(optimizer_state)
        try:
            inner = keras.optimizers.get(optimizer)
        except ValueError as error:
            raise InvalidArgumentError(
                "LookaheadOptimizer wraps a Keras 3 optimizer (e.g. keras.optimizers.SGD(0.1) "
                "or 'adam'); got {!r} ({}).{}".format(optimizer, error,
                                                       _tf_keras_hint(optimizer))) from None
        if isinstance(inner, LookaheadOptimizer) or not isinstance(
                inner, keras.optimizers.Optimizer):
            raise InvalidArgumentError(
                "LookaheadOptimizer wraps a Keras 3 optimizer that is not a Lookahead itself; "
                "got {}.".format(type(inner).__name__))
        check_no_loss_scale_inside(inner)
        optimizer_slots.check(inner, optimizer_state)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner
        self.k, self.alpha, self.optimizer_state = k, alpha, optimizer_state
        platform = _platform()
        self._lookahead = NativeLookahead(None, k, alpha, optimizer_state, platform)
        self._step = platform.wrap_step(self._apply_with_lookahead)

    def build(self, var_list):
        inner = self.inner_optimizer
        inner.build(var_list)
        self._lookahead.move_into_optimizer(inner)
        # Keras loads a file's optimizer variables into the inner optimizer (its own
        # section): the platform's host copies of the count and the flags follow.
        inner.load_own_variables = _refreshing(self._lookahead, inner.load_own_variables)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return None
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
        elif not self.built:
            # Keras' own words for it.
            raise ValueError("When passing `grads` without `variables`, the optimizer must "
                             "already be built on a list of variables. Call "
                             "`optimizer.build(trainable_variables)` first.")
        if any(g is None for g in grads):
            # A weight without a gradient is no part of this step: not written, its slow
            # copy kept (the inner optimizer would leave it out the same way).
            passed = (self._trainable_variables if trainable_variables is None
                      else trainable_variables)
            kept = [(g, v) for g, v in zip(grads, passed) if g is not None]
            if not kept:
                return None
            grads, trainable_variables = [g for g, _ in kept], [v for _, v in kept]
        return self._step(grads, trainable_variables)

    def _apply_with_lookahead(self, grads, trainable_variables):
        inner = self.inner_optimizer
        return self._lookahead.platform.step(self._lookahead, inner, inner.apply, grads,
                                             trainable_variables)

    learning_rate = passed_to_inner("learning_rate")
    iterations = passed_to_inner("iterations")

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {"name": self.name,
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
                "k": self.k, "alpha": self.alpha, "optimizer_state": self.optimizer_state}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"),
                                                      custom_objects=custom_objects)
        return cls(inner, **config)


def _refreshing(lookahead, load_own_variables):
    def load_refreshing(store):
        load_own_variables(store)
        lookahead.platform.written(lookahead)
    return load_refreshing


def _tf_keras_hint(optimizer):
    if type(optimizer).__module__.split(".")[0] != "tf_keras":
        return ""
    return (" It is a tf-keras optimizer: with TF_USE_LEGACY_KERAS=1 set before TensorFlow is "
            "imported, tf.keras is tf-keras and lookahead_inject.LookaheadOptimizer is "
            "tf-keras' own.")
