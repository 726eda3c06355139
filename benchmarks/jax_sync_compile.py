"""How long XLA takes to compile Lookahead's sync on JAX, and to run it, by how the slow
copies are packed.

Issue #22: on the 82-layer stack (164 tensors), the first step of an injected Keras 3 / JAX
fit took ~3x plain's, nearly all of it XLA compiling the sync: every weight's slow copy
is a segment of a packed array, in a while loop of 0 or 1 trips
(``NativeLookahead.pulled_packed`` inside ``keras3_jax._when``). This times only that
loop, jitted alone, built from the library's own pieces (``Segment``,
``pulled_into_segments``, ``keras3_jax._when``), for the weights of a model's shape
(``--model``: dense82's (64, 64) kernels and (64,) biases, the 784-1024-512-10 MLP, or
two BERT-base encoder layers), with the slow copies packed into arrays of at most
``segments`` weights each (1 is one array per weight, "all" one per dtype) and a weight
of ``--alone`` elements or more in an array of its own (the library's
``keras3_jax._Jax.ALONE``, the default; 0: none alone). Each layout is compiled afresh in every round,
in a rotated order, and its compiled sync run (``--runs`` times, the weights donated as in
``fit``); a layout's ratios are medians over rounds of its time over the
one-array-per-weight layout's in the same round.

    KERAS_BACKEND=jax python benchmarks/jax_sync_compile.py [--model dense82] \
        [--weights 40,82,164] [--segments 1,8,16,32,all] [--alone 16384] [--rounds 3]

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
BERT_LAYER = [(768, 768), (768,)] * 4 + [(768,), (768,)] + [
    (768, 3072), (3072,), (3072, 768), (768,), (768,), (768,)]
MODELS = {"dense82": lambda count: [(64, 64) if i % 2 == 0 else (64,) for i in range(count)],
          "mlp": lambda count: [(784, 1024), (1024,), (1024, 512), (512,), (512, 10), (10,)],
          "bert": lambda count: BERT_LAYER * 2}


def layout(weight_shapes, segments, alone):
    """Per weight (array index, offset); and each array's size."""
    places, sizes, filling = [], [], None
    for shape in weight_shapes:
        size = int(np.prod(shape))
        if alone and size >= alone:
            places.append((len(sizes), 0))
            sizes.append(size)
            continue
        if filling is None or filling[1] == segments:
            filling = [len(sizes), 0]
            sizes.append(0)
        places.append((filling[0], sizes[filling[0]]))
        sizes[filling[0]] += size
        filling[1] += 1
    return places, sizes


def sync_function(weight_shapes, segments, alone):
    """The library's sync (``pulled_into_segments``, what ``NativeLookahead.pulled_packed``
    runs), inside the step's 0-or-1-trip loop."""
    places, _ = layout(weight_shapes, segments, alone)

    def pulled(values):
        fast, packed = values
        return pulled_into_segments(
            [Segment(packed[j], j, offset, shape)
             for (j, offset), shape in zip(places, weight_shapes)], fast, packed, ALPHA)

    def step(flag, fast, packed):
        return keras3_jax._when(flag, pulled, (fast, packed))
    return step


def compile_and_run_seconds(weight_shapes, segments, alone, runs):
    _, sizes = layout(weight_shapes, segments, alone)
    fast = [jnp.ones(shape, "float32") for shape in weight_shapes]
    packed = [jnp.zeros((size,), "float32") for size in sizes]
    flag = jnp.asarray(True)
    start = time.perf_counter()
    sync = jax.jit(sync_function(weight_shapes, segments, alone),
                   donate_argnums=(1, 2)).lower(flag, fast, packed).compile()
    compiled = time.perf_counter() - start
    fast, packed = sync(flag, fast, packed)
    jax.block_until_ready(packed)
    start = time.perf_counter()
    for _ in range(runs):
        fast, packed = sync(flag, fast, packed)
    jax.block_until_ready(packed)
    return compiled, (time.perf_counter() - start) / runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="dense82")
    parser.add_argument("--weights", default="40,82,164", help="dense82 only")
    parser.add_argument("--segments", default="1,8,16,32,all")
    parser.add_argument("--alone", type=int, default=keras3_jax._Jax.ALONE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    counts = [int(n) for n in args.weights.split(",")] if args.model == "dense82" else [0]
    first = args.segments.split(",")[0]
    print("| weights | segments per array | arrays | compile s (median) | ÷ {0} per array "
          "| sync ms (median) | ÷ {0} per array |".format(first))
    print("|---|---|---|---|---|---|---|")
    for count in counts:
        weight_shapes = MODELS[args.model](count)
        count = len(weight_shapes)
        chosen = [count if s == "all" else int(s) for s in args.segments.split(",")]
        times = dict((s, []) for s in chosen)
        for round_ in range(args.rounds):
            order = chosen[round_ % len(chosen):] + chosen[:round_ % len(chosen)]
            for segments in order:
                times[segments].append(compile_and_run_seconds(
                    weight_shapes, segments, args.alone, args.runs))
        for segments in chosen:
            row = [count, "all" if segments == count else segments,
                   len(layout(weight_shapes, segments, args.alone)[1])]
            for which in (0, 1):
                mine = [t[which] for t in times[segments]]
                base = [t[which] for t in times[chosen[0]]]
                row += [statistics.median(mine) * (1000 if which else 1),
                        statistics.median([a / b for a, b in zip(mine, base)])]
            print("| {} | {} | {} | {:.2f} | {:.2f} | {:.3f} | {:.2f} |".format(*row))


if __name__ == "__main__":
    main()
