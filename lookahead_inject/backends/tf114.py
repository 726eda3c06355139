"""TF 1.14, graph mode: the blog's first variant, with its bugs fixed.

The train function is built as TF 1.14's ``Model._make_train_function`` builds
it (metrics from ``_all_metrics_tensors``; 1.14 has no trainable-state
snapshot), with the Lookahead ops inside the same ``K.function``.
"""

from . import _graph

#: Lookahead under a tf.distribute strategy (refused in graph mode, see _graph.check).
DISTRIBUTE = False

#: Checkpoint formats that carry the Lookahead state by themselves (tests/test_state.py;
#: HDF5: tests/test_h5_files.py, _h5_files).
CHECKPOINT_FORMATS = ("model.save_weights(path) in TF format (no .h5)",
                      ".h5 / .hdf5 HDF5 (model.save, save_weights; restored by load_weights)")


def check(model):
    _graph.check(model)


def attach(model, k, alpha, optimizer_state="keep"):
    return _graph.attach(model, k, alpha, _build_train_function,
                         optimizer_state=optimizer_state)


def _build_train_function(model, K, training_updates):
    # Mirrors tensorflow/python/keras/engine/training.py (1.14.0), L2199-2232.
    has_recompiled = model._recompile_weights_loss_and_weighted_metrics()
    metrics_tensors = [model._all_metrics_tensors[m] for m in model.metrics_names[1:]]
    model._check_trainable_weights_consistency()
    if getattr(model, "train_function", None) is not None and not has_recompiled:
        return
    inputs = _graph.feed_inputs(model, K)
    with K.get_graph().as_default():
        with K.name_scope("training"):
            updates = training_updates()
    # 1.14 collects the model's own updates outside the graph scope.
    updates += model.get_updates_for(None)
    updates += model.get_updates_for(model.inputs)
    _graph.set_train_function(model, K, inputs, metrics_tensors, updates)
