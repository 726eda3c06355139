"""The public handle: ``Lookahead`` and ``inject``.

No numpy here (nor in any module ``import lookahead_inject`` loads): the package
declares only ``packaging``, so ``import lookahead_inject`` and ``info`` must work
on a Python without TensorFlow and its numpy, to say how to install them.
"""

import contextlib
import weakref

from . import dispatch, state
from .arguments import checked_alpha, checked_k, checked_optimizer_state
from .backends.common.optimizer_chain import check_not_lookahead
from .environment import detect_environment, keras_label, model_keras_module
from .errors import InvalidArgumentError, ModelNotReadyError
from .rule import PULLBACK

# model -> a weak reference to its handle, for ``of(model)`` and a second ``inject``.
# Never the handle itself: it holds the model, and a value that references its weak key
# keeps that key alive, so every injected model would live until the process ends. The
# handle lives as long as the model trains with it: the attachment the model's wrappers
# hold keeps the handle's state functions (Attachment.bind).
_INJECTED = weakref.WeakKeyDictionary()


def _check_compiled(model):
    # On the class: an unbuilt Keras 2.4+ Sequential raises from trainable_weights.
    if not (hasattr(model, "compile") and hasattr(type(model), "trainable_weights")):
        raise ModelNotReadyError(
            "inject() takes a compiled tf.keras Model; got {}.".format(type(model).__name__))
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ModelNotReadyError(
            "The model is not compiled. Call model.compile(optimizer=..., loss=...) "
            "before inject(model): Lookahead wraps the optimizer that compile sets.")
    if isinstance(optimizer, (list, tuple)):
        raise ModelNotReadyError(
            "The model was compiled with a list of {} optimizers; Lookahead needs "
            "one optimizer. Compile with a single optimizer.".format(len(optimizer)))
    # A model without weights yet (a Sequential without an input shape, a
    # subclassed model) is built by its first fit; its slow copies are made then.
    if getattr(model, "built", True) and not model.trainable_weights:
        raise ModelNotReadyError(
            "The model has no trainable weights, so Lookahead has nothing to do. "
            "Make at least one layer trainable before inject().")


class Lookahead(object):
    """Lookahead (Zhang et al. 2019) around the optimizer of a compiled Keras model.

    The optimizer takes the fast steps. The library keeps a slow copy of every
    trainable weight, equal to the fast weights at the first training step, and
    after fast steps k, 2k, 3k, ... (one count across epochs, ``fit``,
    ``train_on_batch`` and ``fit_generator``) it sets::

        slow <- slow + alpha * (fast - slow)
        fast <- slow

    k=1, alpha=1 is plain training; alpha=0 goes back to the start every k steps.
    The sync runs inside the training step; loss and metrics are reported as
    without Lookahead.

    ``optimizer_state`` says what an in-step sync does to the optimizer's own
    state of the trained weights (Algorithm 1 leaves it open; the paper's
    authors' code offers the same three choices as ``pullback_momentum``):

    - ``"keep"`` (default): nothing, the optimizer carries on.
    - ``"reset"``: every per-weight slot (SGD momentum, Adam's moments, RMSprop's
      accumulators, ...) goes back to zero, as optax's ``reset_state=True``. Unlike
      optax, the step count ``optimizer.iterations`` (Adam's bias-correction count)
      is not reset: it is also the learning-rate schedule's step. Optimizers whose
      slots do not start at zero (Adagrad, Ftrl) are refused.
    - ``"pullback"``: SGD's momentum ``m <- alpha * m + (1 - alpha) * m_cached``, then
      ``m_cached <- m`` (``m_cached`` starts at zero). SGD with momentum > 0 only.

    Frozen weights' optimizer state is never touched.

    >>> import numpy as np, tensorflow as tf
    >>> from lookahead_inject import Lookahead
    >>> model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    >>> model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    >>> la = Lookahead(k=2, alpha=0.0).inject(model)
    >>> start = model.get_weights()
    >>> x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    >>> _ = model.train_on_batch(x, y)
    >>> bool(np.allclose(model.get_weights()[0], start[0]))     # one fast step moved
    False
    >>> _ = model.train_on_batch(x, y)                          # step k=2: back to slow
    >>> all(np.allclose(w, s) for w, s in zip(model.get_weights(), start))
    True
    """

    def __init__(self, k=5, alpha=0.5, optimizer_state="keep"):
        self.k = checked_k(k)
        self.alpha = checked_alpha(alpha)
        self.optimizer_state = checked_optimizer_state(optimizer_state)
        self.model = None
        self.backend = None
        self._attachment = None

    def inject(self, model, backend="auto"):
        """Make ``model`` train with Lookahead; returns the handle bound to it.

        A ``Lookahead`` serves one model: injecting an already bound one into
        another model returns a new handle with the same k, alpha and
        optimizer_state (each model keeps its own step count).
        """
        if self.model is not None:
            return Lookahead(self.k, self.alpha, self.optimizer_state).inject(model, backend)
        _check_compiled(model)
        check_not_lookahead(model.optimizer)
        current = of(model)
        if current is not None:
            # A model that already trains with this Lookahead (e.g. from load_model): its
            # handle, rather than a second Lookahead that would restart the cycle.
            if (current.k, current.alpha, current.optimizer_state) == \
                    (self.k, self.alpha, self.optimizer_state):
                return current
            raise ModelNotReadyError(
                "This model already trains with Lookahead (k={}, alpha={}, optimizer_state="
                "{!r}). Use its handle (lookahead_inject.of(model)), or call its remove() "
                "before injecting another.".format(current.k, current.alpha,
                                                   current.optimizer_state))
        name = dispatch.choose_backend(detect_environment(model), backend)
        chosen = dispatch.load_backend(name)
        chosen.check(model)
        self._attachment = chosen.attach(model, self.k, self.alpha, self.optimizer_state)
        self._attachment.bind(self.get_state, self.set_state, self._weight_specs)
        self.model, self.backend = model, name
        _INJECTED[model] = weakref.ref(self)
        return self

    def remove(self):
        """Give the model its own training back (fast weights stay as they are)."""
        if self.model is None:
            raise InvalidArgumentError("This Lookahead is not injected into a model.")
        self._attachment.detach()
        del _INJECTED[self.model]
        self.model = self._attachment = None

    @property
    def step(self):
        """Fast steps taken since inject, as stored in the model's step counter."""
        attachment = self._bound()
        return int(attachment.read([attachment.variables.step])[0])

    # -- state ---------------------------------------------------------------

    def get_state(self):
        """``{"step", "slow_weights", "k", "alpha", "optimizer_state", "momentum_cache"}``
        as plain Python / numpy values, with a slow weight (and, for "pullback" only,
        a momentum copy) for each of ``model.trainable_weights``, in that order.

        A weight whose slow copy is not taken yet (before the first training
        step, or trainable since the last ``compile``) has, by definition, its
        fast value as slow weight.
        """
        attachment = self._bound()
        variables = attachment.variables
        step = self.step
        weights = self._weights()
        taken = set(id(w) for w in variables.taken()) if step else ()
        sources = [variables.slow_for(w) if id(w) in taken else w for w in weights]
        momentum = [variables.momentum_for(w) for w in weights] \
            if self.optimizer_state == PULLBACK else []
        values = attachment.read(sources + momentum)
        return state.make(step, values[:len(sources)], self.k, self.alpha,
                          self.optimizer_state, values[len(sources):])

    def set_state(self, lookahead_state):
        """Restore what ``get_state`` returned; refuses a state of another model, k,
        alpha or optimizer_state."""
        attachment = self._bound()
        self._check_built(lookahead_state)
        slow, step, momentum = state.checked_values(lookahead_state, self.k, self.alpha,
                                                    self._weight_specs(), self.optimizer_state)
        variables, weights = attachment.variables, self._weights()
        variables.mark_trained(weights)
        copies = [variables.momentum_for(w) for w in weights] if momentum else []
        attachment.write([variables.slow_for(w) for w in weights] + copies + [variables.step],
                         slow + momentum + [step])
        attachment.state_written()

    def _check_built(self, lookahead_state):
        # A model without weights yet has nothing to put slow weights on: say how to get
        # them, rather than "the model has 0 trainable weights".
        # (Keras 3's build(input_shape) of a subclassed model marks it built, weightless.)
        slow = lookahead_state.get("slow_weights") if isinstance(lookahead_state, dict) else None
        if not (isinstance(slow, (list, tuple)) and slow) or self._weights():
            return
        if getattr(self.model, "built", True) and list(self.model.weights):
            return      # all frozen: check_compatible says so
        raise ModelNotReadyError(
            "The model has no weights yet (it makes them at its first step, e.g. a "
            "Sequential without an input shape or a subclassed model), so the {} slow "
            "weights of this Lookahead state have nowhere to go. Build the model first: "
            "call it on one batch (model.predict(x[:1])), or give it an input shape "
            "(keras.Input, model.build(input_shape) for a Sequential); then call la.load / "
            "la.set_state.".format(len(slow)))

    def save(self, path):
        """Write the state to the single file ``path`` (exactly that path)."""
        state.save(path, self.get_state(), self._weight_specs())

    def load(self, path):
        """Read the state ``save(path)`` wrote and restore it."""
        self._bound()
        self.set_state(state.load(path))

    def _weights(self):
        return self._bound().trainable_weights()

    def _weight_specs(self):
        return [(_weight_name(w), _shape(w), _numpy_dtype(w)) for w in self._weights()]

    # -- the slow weights in use ---------------------------------------------

    @contextlib.contextmanager
    def slow_weights(self):
        """Swap the slow weights into the model for the ``with`` block (evaluate,
        predict, save), and put the fast weights back after it, also on an exception.

        Do not train inside the block.
        """
        attachment = self._bound()
        weights = self._weights()
        fast_values = attachment.read(weights)
        attachment.write(weights, self.get_state()["slow_weights"])
        try:
            yield self.model
        finally:
            attachment.write(weights, fast_values)

    def sync(self):
        """Run the Lookahead sync now: slow <- slow + alpha (fast - slow), fast <- slow,
        for the weights training trains, by the same ops as the in-step sync.

        After it the model holds the Lookahead weights (what to save or export).
        The step count is unchanged, so the next in-step sync is still after the
        next multiple of k. Before the first step there is nothing to pull. The
        optimizer's state is left as it is: ``optimizer_state`` applies to the
        syncs inside the training steps.
        """
        attachment = self._bound()
        if self.step:
            attachment.sync_now()

    def sync_callback(self, at="epoch"):
        """A Keras callback that calls ``sync()`` at the end of each epoch
        (``at="epoch"``) or of each ``fit`` (``at="fit"``)."""
        if at not in ("epoch", "fit"):
            raise InvalidArgumentError(
                "sync_callback(at={!r}): at is 'epoch' or 'fit'.".format(at))
        lookahead = self

        # The Callback of the Keras that built the model: beside TF 2.16+, tf.keras may be
        # the other one of Keras 3 and tf-keras, whose callbacks the model's fit rejects.
        callbacks = model_keras_module(self.model).callbacks

        class LookaheadSync(callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if at == "epoch":
                    lookahead.sync()

            def on_train_end(self, logs=None):
                if at == "fit":
                    lookahead.sync()

        return LookaheadSync()

    def _bound(self):
        if self._attachment is None:
            raise InvalidArgumentError(
                "This Lookahead is not injected into a model; call inject(model) first.")
        return self._attachment

    def __repr__(self):
        where = "model {!r} via {}".format(self.model.name, self.backend) if self.model else "not injected"
        return "Lookahead(k={}, alpha={}, optimizer_state={!r}; {})".format(
            self.k, self.alpha, self.optimizer_state, where)


def _weight_name(variable):
    # Keras 3 names a weight by its path ("dense/kernel"); its name is "kernel".
    return getattr(variable, "path", None) or variable.name


def _shape(variable):
    # tf.TensorShape (Keras 2, TF 1) or a tuple (Keras 3).
    shape = variable.shape
    return tuple(shape.as_list() if hasattr(shape, "as_list") else shape)


def _numpy_dtype(variable):
    dtype = variable.dtype
    # tf.DType (Keras 2, TF 1) or a string (Keras 3).
    return getattr(getattr(dtype, "base_dtype", dtype), "as_numpy_dtype", dtype)


def inject(model, k=5, alpha=0.5, backend="auto", optimizer_state="keep"):
    """Add Lookahead to a compiled Keras model; returns its ``Lookahead`` handle.

    Same as ``Lookahead(k, alpha, optimizer_state).inject(model, backend)``.
    ``backend="auto"`` picks the backend for the running TensorFlow (see
    ``detect()``); ``optimizer_state`` ("keep", "reset", "pullback") is what a
    sync does to the optimizer's own state (see ``Lookahead``).

    >>> import numpy as np, tensorflow as tf
    >>> from lookahead_inject import inject
    >>> model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    >>> model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    >>> la = inject(model, k=5, alpha=0.5)
    >>> _ = model.fit(np.ones((8, 3)), np.zeros((8, 1)), batch_size=4, epochs=3, verbose=0)
    >>> la.step
    6
    """
    return Lookahead(k, alpha, optimizer_state).inject(model, backend)


def of(model):
    """The ``Lookahead`` handle of a model that trains with Lookahead, else None.

    >>> import tensorflow as tf
    >>> import lookahead_inject
    >>> model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> lookahead_inject.of(model) is None
    True
    >>> la = lookahead_inject.inject(model, k=3)
    >>> lookahead_inject.of(model) is la, lookahead_inject.inject(model, k=3) is la
    (True, True)
    """
    reference = _INJECTED.get(model)
    handle = reference() if reference is not None else None
    return handle if handle is not None and handle.model is model else None


def detect(model=None, backend="auto"):
    """What ``inject(model)`` would see here: a dict with the TF version, the Keras
    that builds the model (without ``model``: the Keras behind ``tf.keras``; a model
    built by standalone ``import keras`` 2.2 / 2.3 gets a backend of its own, and from
    TF 2.16 one of ``import keras`` (Keras 3) or ``import tf_keras`` that of its Keras,
    whichever ``tf.keras`` is), the execution mode, the backend ``inject`` picks, whether that
    backend supports ``tf.distribute`` strategies, and the checkpoint formats that
    carry the Lookahead state (``la.save`` / ``la.load`` work everywhere).

    Raises the same clear error as ``inject`` when no backend fits.
    """
    environment = detect_environment(model)
    name = dispatch.choose_backend(environment, backend)
    chosen = dispatch.load_backend(name)
    return {
        "tensorflow": None if environment.tf_version is None else str(environment.tf_version),
        "keras": environment.keras,
        "keras_version": environment.keras_version,
        "keras_label": keras_label(environment.keras, environment.keras_version),
        "mode": environment.mode,
        "keras_backend": environment.keras_backend,
        "backend": name,
        "distribute": "supported" if chosen.distribute else "not supported",
        "checkpoints": list(chosen.checkpoint_formats),
    }
