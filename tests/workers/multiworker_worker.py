"""One worker of a two-process MultiWorkerMirroredStrategy run (see test_distribute.py).

    python multiworker_worker.py INDEX PORT0,PORT1 DIR

Both workers listen on 127.0.0.1 only. Each trains the test MLP with Adam and
Lookahead(k=3, alpha=0.5) through fit, then writes its weights, slow weights and
step to DIR/worker<INDEX>.npz; the chief also writes la.save(DIR/chief_state).
"""

import json
import os
import sys

INDEX, PORTS, DIR = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": ["127.0.0.1:" + port for port in PORTS]},
    "task": {"type": "worker", "index": INDEX},
})

# The tests' helpers (harness, keras3_support, common, reference) are in tests/, above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness import configure_mode  # noqa: E402

configure_mode("eager")
import harness  # noqa: E402
from lookahead_inject import inject  # noqa: E402

# TF 2.0-2.3 keep it under experimental.
Strategy = getattr(tf.distribute, "MultiWorkerMirroredStrategy", None) or \
    tf.distribute.experimental.MultiWorkerMirroredStrategy


def main():
    strategy = Strategy()
    with strategy.scope():
        model = harness.mlp("adam", harness.start_weights())
    la = inject(model, k=3, alpha=0.5)
    x, y = harness.data()
    model.fit(x, y, batch_size=harness.BATCH, epochs=harness.EPOCHS, shuffle=False, verbose=0)
    state = la.get_state()
    np.savez(os.path.join(DIR, "worker{}.npz".format(INDEX)), *model.get_weights(),
             *state["slow_weights"], step=state["step"])
    if INDEX == 0:
        la.save(os.path.join(DIR, "chief_state"))


if __name__ == "__main__":
    main()
    # Everything is written. TF 2.5's collective-ops threads can abort the interpreter at
    # exit ("terminate called without an active exception", SIGABRT; the full sweep of
    # 2026-11-26, worker 1, after its results were saved): leave without TF's teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
