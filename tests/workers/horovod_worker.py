"""One rank of a Horovod run (see test_horovod.py); launch it with horovodrun:

    horovodrun --gloo -np 2 -H localhost:2 python horovod_worker.py MODE OPT API START DIR [RESUME]

MODE: graph or eager. OPT: a reference.OPTIMIZERS name. API: fit or train_on_batch.
START: "alike" (every rank from harness.start_weights()) or "per_rank" (each rank
from its own random weights, as scripts that seed per rank do). Each rank trains
the test MLP on its half of every global batch of 16, with
hvd.DistributedOptimizer, Horovod's broadcast from rank 0 after the first batch
and Lookahead(k=3, alpha=0.5), and writes its weights, slow weights and step to
DIR/rank<R>.npz. RESUME=resume: the ranks train two epochs, rank 0 saves the model's
weights and la.save, every rank builds a fresh model, loads both and trains the
last two epochs. PASSES2=passes2: inject into a model whose optimizer has
backward_passes_per_step=2 and print the error.
"""

import os
import sys

MODE, OPT, API, START, DIR = sys.argv[1:6]
RESUME = sys.argv[6:] == ["resume"]
PASSES2 = sys.argv[6:] == ["passes2"]

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import harness  # noqa: E402
import reference  # noqa: E402

harness.configure_mode(MODE)
import horovod.tensorflow.keras as hvd  # noqa: E402

from lookahead_inject import ModelNotReadyError, inject  # noqa: E402

K, ALPHA = 3, 0.5
SHARD = harness.BATCH // 2


def shard(x, rank):
    """This rank's half of every global batch, in order (fit(shuffle=False) batches of 8)."""
    return np.concatenate([x[i + rank * SHARD:i + (rank + 1) * SHARD]
                           for i in range(0, len(x), harness.BATCH)])


def build(rank):
    weights = harness.start_weights() if START == "alike" else \
        reference.mlp_init(harness.N_IN, seed=100 + rank)
    model = harness.mlp(hvd.DistributedOptimizer(harness.optimizer(OPT)), weights)
    return model, inject(model, k=K, alpha=ALPHA)


class GraphBroadcast(tf.keras.callbacks.Callback):
    """What BroadcastGlobalVariablesCallback(0) does in TF 2 eager, in TF 2.15 graph mode,
    where Horovod's own callback fails without Lookahead too (its keras.backend has no
    get_session): the model's and the optimizer's variables from rank 0 after the first
    batch. Not every global variable, so the slow weights are not broadcast here either."""

    def __init__(self):
        super(GraphBroadcast, self).__init__()
        self.done = False

    def on_batch_end(self, batch, logs=None):
        if not self.done:
            import horovod.tensorflow as hvd_tf
            variables = self.model.variables + self.model.optimizer.variables()
            tf.compat.v1.keras.backend.get_session().run(hvd_tf.broadcast_variables(variables, 0))
            self.done = True


def barrier():
    import horovod.tensorflow as hvd_tf
    total = hvd_tf.allreduce(tf.constant(0.0), name="barrier")
    if not tf.executing_eagerly():
        # hvd.allreduce of horovod.tensorflow.keras fails in TF 2.15 graph mode (as
        # its callback does), so the op runs in Keras' session here.
        tf.compat.v1.keras.backend.get_session().run(total)


def train(model, x, y, epochs):
    broadcast = GraphBroadcast() if MODE == "graph" and tf.__version__ >= "2" else \
        hvd.callbacks.BroadcastGlobalVariablesCallback(0)
    if API == "fit":
        model.fit(x, y, batch_size=SHARD, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[broadcast])
        return
    # train_on_batch runs no callbacks: broadcast after the first batch, as the
    # callback does (the optimizer's variables exist only from then on).
    broadcast.set_model(model)
    batches = [(x[i:i + SHARD], y[i:i + SHARD]) for i in range(0, len(x), SHARD)] * epochs
    for i, (bx, by) in enumerate(batches):
        model.train_on_batch(bx, by)
        broadcast.on_batch_end(i)


def main():
    hvd.init()
    rank = hvd.rank()
    if PASSES2:
        model = harness.mlp(hvd.DistributedOptimizer(harness.optimizer(OPT), backward_passes_per_step=2))
        try:
            inject(model)
        except ModelNotReadyError as exc:
            print("REFUSED: {}: {}".format(type(exc).__name__, exc))
        return
    x, y = harness.data()
    x, y = shard(x, rank), shard(y, rank)
    model, la = build(rank)
    if RESUME:
        half = harness.EPOCHS // 2
        train(model, x, y, half)
        if rank == 0:
            model.save_weights(harness.h5_path(DIR, "model"))
            la.save(os.path.join(DIR, "state"))
        barrier()                                 # rank 0 has written both files
        tf.keras.backend.clear_session()
        model, la = build(rank)
        model.load_weights(harness.h5_path(DIR, "model"))
        la.load(os.path.join(DIR, "state"))
        train(model, x, y, harness.EPOCHS - half)
    else:
        train(model, x, y, harness.EPOCHS)
    state = la.get_state()
    np.savez(os.path.join(DIR, "rank{}.npz".format(rank)), *model.get_weights(),
             *state["slow_weights"], step=state["step"])


if __name__ == "__main__":
    main()
