"""Saves two Lookahead states of a few MB to one file, alternately, until killed.

    python state_file_worker.py PATH

Prints "saving N" (flushed) just before the N-th save starts, so when the test reads
"saving N" save N-1 is complete and save N is under way. Needs numpy only: the
state file module runs without TensorFlow, so the worker starts fast.
"""

import sys

import numpy as np

from lookahead_inject import state

LIKE = [("dense/kernel", (700, 1000), "float32"), ("dense/bias", (1000,), "float32"),
        ("embedding", (300, 8), "float64")]


def states():
    """The two states the worker saves: distinct random weights, steps 10 and 11."""
    result = []
    for seed in (10, 11):
        rng = np.random.RandomState(seed)
        slow = [rng.standard_normal(shape).astype(dtype) for _, shape, dtype in LIKE]
        result.append(state.make(seed, slow, 3, 0.5))
    return result


def main(path):
    both = states()
    n = 0
    while True:
        n += 1
        sys.stdout.write("saving {}\n".format(n))
        sys.stdout.flush()
        state.save(path, both[n % 2], LIKE)


if __name__ == "__main__":
    main(sys.argv[1])
