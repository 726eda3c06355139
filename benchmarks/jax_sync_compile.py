"""How long XLA takes to compile Lookahead's sync on JAX, by how the slow copies are packed.

Issue #22: on the 82-layer stack (164 tensors), the first step of an injected Keras 3 / JAX
fit took ~3x plain's, nearly all of it XLA compiling the sync: every weight's slow copy
is a segment of one array per dtype, read with a slice and written back with a dynamic
update slice, in a while loop of 0 or 1 trips (``NativeLookahead.pulled_packed`` inside
``keras3_jax._when``). This times only that loop, jitted alone, built from the library's
own pieces (``Segment``, ``pulled_into_segments``, ``keras3_jax._when``), for dense82-shaped
weights ((64, 64) kernels and (64,) biases), with the slow copies packed into arrays of
at most ``segments`` weights each: 1 is one array per weight, "all" one per dtype (the
library's layout before the change this measured). Each layout is compiled afresh in
every round, in a rotated order; a layout's ratio is the median over rounds of its
compile time over the one-array-per-weight layout's in the same round.

    KERAS_BACKEND=jax python benchmarks/jax_sync_compile.py [--weights 40,82,164] [--rounds 3]

Never run as a test: times are only meaningful as ratios within one run.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lookahead_inject.backends.native import keras3_jax  # noqa: E402
from lookahead_inject.backends.native._optimizer_variables import (  # noqa: E402
    Segment, pulled_into_segments)

ALPHA = 0.5


def shapes(count):
    return [(64, 64) if i % 2 == 0 else (64,) for i in range(count)]


def layout(weight_shapes, segments):
    """Per weight (array index, offset, size); and each array's size."""
    places, sizes = [], []
    for i, shape in enumerate(weight_shapes):
        size = int(np.prod(shape))
        if i % segments == 0:
            sizes.append(0)
        places.append((len(sizes) - 1, sizes[-1], size))
        sizes[-1] += size
    return places, sizes


def sync_function(weight_shapes, segments):
    """The library's sync (``pulled_into_segments``, what ``NativeLookahead.pulled_packed``
    runs), inside the step's 0-or-1-trip loop."""
    places, _ = layout(weight_shapes, segments)

    def pulled(values):
        fast, packed = values
        return pulled_into_segments(
            [Segment(packed[j], j, offset, shape)
             for (j, offset, _), shape in zip(places, weight_shapes)], fast, packed, ALPHA)

    def step(flag, fast, packed):
        return keras3_jax._when(flag, pulled, (fast, packed))
    return step


def compile_seconds(weight_shapes, segments):
    _, sizes = layout(weight_shapes, segments)
    fast = [jnp.zeros(shape, "float32") for shape in weight_shapes]
    packed = [jnp.zeros((size,), "float32") for size in sizes]
    start = time.perf_counter()
    jax.jit(sync_function(weight_shapes, segments)).lower(
        jnp.asarray(True), fast, packed).compile()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="40,82,164")
    parser.add_argument("--segments", default="1,8,16,32,all")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    first = args.segments.split(",")[0]
    print("| weights | segments per array | arrays | compile s (median) | ÷ {} per array |".format(first))
    print("|---|---|---|---|---|")
    for count in [int(n) for n in args.weights.split(",")]:
        weight_shapes = shapes(count)
        chosen = [count if s == "all" else int(s) for s in args.segments.split(",")]
        times = dict((s, []) for s in chosen)
        for round_ in range(args.rounds):
            order = chosen[round_ % len(chosen):] + chosen[:round_ % len(chosen)]
            for segments in order:
                times[segments].append(compile_seconds(weight_shapes, segments))
        for segments in chosen:
            ratios = [t / base for t, base in zip(times[segments], times[chosen[0]])]
            print("| {} | {} | {} | {:.2f} | {:.2f} |".format(
                count, "all" if segments == count else segments,
                len(layout(weight_shapes, segments)[1]),
                statistics.median(times[segments]), statistics.median(ratios)))


if __name__ == "__main__":
    main()
