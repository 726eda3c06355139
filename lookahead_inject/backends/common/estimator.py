"""``model_to_estimator`` refuses a model that trains with Lookahead.

``tf.keras.estimator.model_to_estimator`` (tensorflow_estimator, TF 1.14 - 2.15;
tf-keras 2.16+ still has the function but no tensorflow_estimator to run it)
never trains the model it is given: the estimator's model_fn clones it into the
estimator's own graph, compiles the clone with a new optimizer made from
``optimizer.get_config()``, and uses the clone's train op. Neither the graph
backends' train function nor the eager backends' hooked optimizer is in that
clone, so the estimator would train plainly without a word. Rebuilding Lookahead
inside the estimator's graph (slow weights in its checkpoints, the first-step
copy inside a MonitoredSession) is not done; the call is refused instead.

Nothing ``model_to_estimator`` reads from the model first can refuse on the
model's behalf: it reads ``_is_graph_network`` and ``optimizer`` (plain
attributes) and calls ``optimizer.get_config()``, which ``model.save`` and
``clone_model`` call too. So the estimator module's ``model_to_estimator`` is
wrapped, once per process; the wrapper refuses only the models ``guard`` holds
and hands every other call on unchanged (a ``keras_model_path`` loads a new
model, which never carries Lookahead).
"""

import functools
import importlib
import weakref

from ...errors import EstimatorNotSupportedError

# The module every public path calls at call time (tf.keras.estimator and
# tf.compat.v1.keras.estimator import it inside their function body and look
# model_to_estimator up on it): `keras` in tensorflow_estimator 1.x, `keras_lib` in 2.x.
_ESTIMATOR_MODULES = ("tensorflow_estimator.python.estimator.keras_lib",
                      "tensorflow_estimator.python.estimator.keras")

_MARK = "_lookahead_inject_refuses_injected_models"

#: Models that train with Lookahead right now (weak: a dropped model is freed).
_GUARDED = weakref.WeakSet()


def guard(model):
    """Make ``model_to_estimator(model)`` refuse ``model``; returns the undo (for ``detach``)."""
    _wrap_model_to_estimator()
    _GUARDED.add(model)
    return lambda: _GUARDED.discard(model)


def _wrap_model_to_estimator():
    for name in _ESTIMATOR_MODULES:
        module = _import(name)
        original = getattr(module, "model_to_estimator", None)
        if original is not None and not getattr(original, _MARK, False):
            module.model_to_estimator = _refusing_injected(original)


def _import(name):
    try:
        return importlib.import_module(name)
    # Not installed (TF 2.16+ has no tensorflow_estimator), or a tensorflow_estimator
    # that does not import with this TF: model_to_estimator cannot run then either.
    except Exception:
        return None


def _refusing_injected(original):
    @functools.wraps(original)
    def model_to_estimator(*args, **kwargs):
        model = kwargs["keras_model"] if "keras_model" in kwargs else (args[0] if args else None)
        if model is not None and model in _GUARDED:
            raise EstimatorNotSupportedError(
                "model_to_estimator() cannot train this model with Lookahead: the "
                "Estimator trains its own clone of the model, with a new optimizer, in "
                "its own graph, where Lookahead does not run, so it would train plainly. "
                "Train with model.fit / train_on_batch (Lookahead runs there), or call "
                "remove() on the Lookahead handle first to convert the model and train "
                "it plainly.")
        return original(*args, **kwargs)

    setattr(model_to_estimator, _MARK, True)
    return model_to_estimator
