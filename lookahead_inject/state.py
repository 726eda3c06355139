"""Lookahead state as plain data, its compatibility check, and its single-file format.

A state is ``{"step": int, "slow_weights": [numpy arrays in model.trainable_weights
order], "k": int, "alpha": float, "optimizer_state": "keep" | "reset" | "pullback",
"momentum_cache": [numpy arrays, "pullback" only]}``. The file is an ``.npz`` archive written to
exactly the path given (numpy's own ``savez`` would append ``.npz`` to a path
without it, and ``load`` of the same path would then miss it), holding the slow
weights (and momentum copies) and a JSON header with step, k, alpha,
optimizer_state, the number of momentum copies and each weight's name, shape and
dtype. A file without optimizer_state (written before it existed) is "keep".

numpy is imported by each function, not by the module: ``import lookahead_inject``
must not need it (see lookahead.py); every caller here has a model, so TF's numpy.
"""

import json

from .errors import InvalidArgumentError

FORMAT = "lookahead_inject.state/1"


def make(step, slow_weights, k, alpha, optimizer_state="keep", momentum_cache=()):
    import numpy as np
    return {"step": int(step), "slow_weights": [np.array(w) for w in slow_weights],
            "k": int(k), "alpha": float(alpha), "optimizer_state": optimizer_state,
            "momentum_cache": [np.array(w) for w in momentum_cache]}


def check_compatible(state, k, alpha, like, optimizer_state="keep"):
    """Refuse ``state`` unless it fits a Lookahead(k, alpha, optimizer_state) over weights ``like``.

    ``like`` is a list of (name, shape, dtype) of the model's trainable weights.
    """
    import numpy as np
    missing = {"step", "slow_weights", "k", "alpha"} - set(state)
    if missing:
        raise InvalidArgumentError(
            "Not a Lookahead state: it lacks {}. Pass what la.get_state() returned "
            "(or la.load() a file la.save() wrote).".format(", ".join(sorted(missing))))
    problems = []
    if int(state["k"]) != k or float(state["alpha"]) != alpha:
        problems.append("it was saved with k={}, alpha={}, this Lookahead has k={}, alpha={} "
                        "(inject with the saved k and alpha to resume)".format(
                            state["k"], state["alpha"], k, alpha))
    # A state from before optimizer_state existed was "keep".
    saved_option = state.get("optimizer_state", "keep")
    if saved_option != optimizer_state:
        problems.append("it was saved with optimizer_state={!r}, this Lookahead has {!r} "
                        "(inject with the saved optimizer_state to resume)".format(
                            saved_option, optimizer_state))
    cache = state.get("momentum_cache") or []
    if optimizer_state == "pullback" and saved_option == optimizer_state and \
            len(cache) != len(like):
        problems.append("it holds {} momentum copies, the model has {} trainable weights".format(
            len(cache), len(like)))
    slow = state["slow_weights"]
    if len(slow) != len(like):
        problems.append("it holds {} slow weights, the model has {} trainable weights".format(
            len(slow), len(like)))
    else:
        for i, (array, (name, shape, dtype)) in enumerate(zip(slow, like)):
            array = np.asarray(array)
            if tuple(array.shape) != tuple(shape) or array.dtype != np.dtype(dtype):
                problems.append("slow weight {} is {} {}, the model's {} is {} {}".format(
                    i, array.dtype, tuple(array.shape), name, np.dtype(dtype), tuple(shape)))
    if int(state["step"]) < 0:
        problems.append("its step is negative ({})".format(state["step"]))
    if problems:
        raise InvalidArgumentError(
            "This Lookahead state does not fit the model: " + "; ".join(problems) + ".")


def checked_values(state, k, alpha, like, optimizer_state="keep"):
    """``state``'s slow weights and momentum copies as arrays and its step as int64,
    after ``check_compatible``."""
    import numpy as np
    check_compatible(state, k, alpha, like, optimizer_state)
    return ([np.asarray(w) for w in state["slow_weights"]], np.int64(state["step"]),
            [np.asarray(w) for w in state.get("momentum_cache") or []])


def save(path, state, like):
    """Write ``state`` to exactly ``path``; ``like`` as in ``check_compatible``."""
    import numpy as np
    header = {"format": FORMAT, "step": state["step"], "k": state["k"], "alpha": state["alpha"],
              "optimizer_state": state.get("optimizer_state", "keep"),
              "momentum_cache": len(state.get("momentum_cache") or []),
              "weights": [{"name": name, "shape": list(shape), "dtype": str(np.dtype(dtype))}
                          for name, shape, dtype in like]}
    arrays = {"slow_{}".format(i): np.asarray(w) for i, w in enumerate(state["slow_weights"])}
    arrays.update(("momentum_{}".format(i), np.asarray(w))
                  for i, w in enumerate(state.get("momentum_cache") or []))
    with open(path, "wb") as out:
        np.savez(out, header=np.array(json.dumps(header)), **arrays)


def load(path):
    """Read what ``save`` wrote to ``path``."""
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            slow = [archive["slow_{}".format(i)] for i in range(len(header["weights"]))]
            cache = [archive["momentum_{}".format(i)]
                     for i in range(header.get("momentum_cache", 0))]
    except (OSError, KeyError, ValueError) as error:
        raise InvalidArgumentError(
            "{} is not a Lookahead state file ({}). Load a file that la.save() wrote.".format(
                path, error)) from error
    if header.get("format") != FORMAT:
        raise InvalidArgumentError("{} has format {!r}, expected {!r}.".format(
            path, header.get("format"), FORMAT))
    return make(header["step"], slow, header["k"], header["alpha"],
                header.get("optimizer_state", "keep"), cache)
