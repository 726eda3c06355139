"""TF 1.15, graph mode: the blog's second variant, with its bugs fixed.

The train function is built as TF 1.15's ``Model._make_train_function`` builds
it (metrics from ``_get_training_eval_metrics``, the compiled trainable state
restored while building), with the Lookahead ops inside the same ``K.function``.
The blog tested ``getattr(self, 'train_function')`` on the Lookahead object, so
its check never saw the model's function; here it is the model's.
"""

from . import _train_function


def build_train_function(model, K, training_updates):
    # Mirrors tensorflow_core/python/keras/engine/training.py (1.15.5), L2091-2136;
    # the v1 engine of TF 2.0-2.15 and tf-keras 2.16+ (training_v1.py) is the same.
    has_recompiled = model._recompile_weights_loss_and_weighted_metrics()
    model._check_trainable_weights_consistency()
    if getattr(model, "train_function", None) is not None and not has_recompiled:
        return
    # 1.15 builds with the trainable flags as they were at compile time.
    current_trainable_state = model._get_trainable_state()
    model._set_trainable_state(model._compiled_trainable_state)
    try:
        inputs = _train_function.feed_inputs(model, K)
        with K.get_graph().as_default():
            with K.name_scope("training"):
                updates = training_updates()
                updates += model.get_updates_for(None)
                updates += model.get_updates_for(model.inputs)
            metrics = model._get_training_eval_metrics()
            metrics_tensors = [m._call_result for m in metrics if hasattr(m, "_call_result")]
        _train_function.set_train_function(model, K, inputs, metrics_tensors, updates)
    finally:
        model._set_trainable_state(current_trainable_state)


BACKEND = _train_function.backend(build_train_function)
