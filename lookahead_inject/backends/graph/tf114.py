"""TF 1.14, graph mode: the blog's first variant, with its bugs fixed.

The train function is built as TF 1.14's ``Model._make_train_function`` builds
it (metrics from ``_all_metrics_tensors``; 1.14 has no trainable-state
snapshot), with the Lookahead ops inside the same ``K.function``.
"""

from . import _train_function


def build_train_function(model, K, training_updates):
    # Mirrors tensorflow/python/keras/engine/training.py (1.14.0), L2199-2232.
    has_recompiled = model._recompile_weights_loss_and_weighted_metrics()
    metrics_tensors = [model._all_metrics_tensors[m] for m in model.metrics_names[1:]]
    model._check_trainable_weights_consistency()
    if getattr(model, "train_function", None) is not None and not has_recompiled:
        return
    inputs = _train_function.feed_inputs(model, K)
    with K.get_graph().as_default():
        with K.name_scope("training"):
            updates = training_updates()
    # 1.14 collects the model's own updates outside the graph scope.
    updates += model.get_updates_for(None)
    updates += model.get_updates_for(model.inputs)
    _train_function.set_train_function(model, K, inputs, metrics_tensors, updates)


BACKEND = _train_function.backend(build_train_function)
