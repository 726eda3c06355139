"""Bytes the compiled Keras 3 / JAX training step copies, plain and with Lookahead.

A count, not a time, so it does not depend on the machine's load: the buffers that
XLA's copy instructions write in the train step that ``fit`` compiles for the MLP
(784-1024-512-10, SGD, k=5), read from XLA's own dump of the optimized module
(``--xla_dump_to``). A copy in the step's entry computation runs on every step,
syncing or not: it is the per-weight work that a conditional over the weights costs
on a step that does not sync. Each row runs ``fit`` in a fresh process.

    python benchmarks/jax_step_copies.py
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROWS = [(0.0, None), (0.0, "keep"), (0.9, None), (0.9, "keep"), (0.9, "reset"),
        (0.9, "pullback")]
COPY = re.compile(r"= (\w+)\[([\d,]*)\]\S* copy\(")
ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
            "s64": 8, "u64": 8, "f64": 8}

FIT = """
import numpy as np, keras
from lookahead_inject import inject
x = np.random.rand(64, 784).astype("float32")
y = np.random.rand(64, 10).astype("float32")
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(1024, activation="relu"),
                          keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
model.compile(keras.optimizers.SGD(0.01, momentum={momentum}), "mse")
if {option!r}:
    inject(model, k=5, alpha=0.5, optimizer_state={option!r})
model.fit(x, y, batch_size=64, epochs=2, verbose=0)
"""


def copied_bytes(momentum, option):
    return bytes_copied(step_module(FIT.format(momentum=momentum, option=option)))


def step_module(source):
    """The optimized HLO text of the train step that ``source`` (a script calling ``fit``
    once) compiles, run with KERAS_BACKEND=jax in a fresh process."""
    with tempfile.TemporaryDirectory() as dump:
        env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_dump_to=" + dump,
                   PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        subprocess.run([sys.executable, "-c", source], env=env, check=True,
                       stderr=subprocess.DEVNULL)
        modules = glob.glob(os.path.join(dump, "*jit_train_step.cpu_after_optimizations.txt"))
        if len(modules) != 1:
            raise RuntimeError("expected one compiled train step, found %d" % len(modules))
        with open(modules[0]) as module:
            return module.read()


def entry_computation(text):
    """The step's entry computation: what runs on every step (a loop's or a conditional's
    body is a computation of its own)."""
    entry = text[text.index("\nENTRY "):]
    return entry[:entry.index("\n}") + 2]


def bytes_copied(text):
    """Bytes the copy instructions of the entry computation write."""
    total = 0
    for match in COPY.finditer(entry_computation(text)):
        dims = [int(d) for d in match.group(2).split(",") if d]
        count = 1
        for d in dims:
            count *= d
        total += count * ITEMSIZE[match.group(1)]
    return total


OPCODE = re.compile(r"= .*? ([a-z][a-z0-9-]*)\(")
#: Instructions that move no data: a computation's inputs, a tuple's packing and
#: unpacking, a reinterpretation of a buffer, a literal.
BOOKKEEPING = frozenset(["parameter", "tuple", "get-tuple-element", "bitcast", "constant"])


def entry_opcodes(text):
    """The opcode of every instruction of the entry computation."""
    codes = []
    for line in entry_computation(text).splitlines()[1:]:
        match = OPCODE.search(line)
        if match:
            codes.append(match.group(1))
    return codes


def main():
    print("| SGD | Lookahead | bytes copied per step |")
    print("|---|---|---|")
    for momentum, option in ROWS:
        print("| momentum {} | {} | {:,} |".format(momentum, option or "none (plain)",
                                                 copied_bytes(momentum, option)))


if __name__ == "__main__":
    main()
