"""Lookahead state as plain data, its compatibility check, and its single-file format.

A state is ``{"step": int, "slow_weights": [numpy arrays in model.trainable_weights
order], "k": int, "alpha": float, "optimizer_state": "keep" | "reset" | "pullback",
"momentum_cache": [numpy arrays like slow_weights, "pullback" only]}``. A state
without optimizer_state (made before it existed) is "keep".

The file, at exactly the path given, is::

    MAGIC                       14 bytes, b"\\x89LOOKAHEAD\\r\\n\\x1a\\n"
    header length               8 bytes, unsigned little-endian
    header                      UTF-8 JSON: {"format", "step", "k", "alpha",
                                "weights": [{"name", "shape", "dtype"}, ...],
                                "optimizer_state", "momentum_cache": 0 or the
                                number of weights} (the last two optional: "keep", 0)
    slow weights                raw C-order bytes of each array in header order,
                                little-endian for numeric dtypes
    momentum copies             the same, one per weight when momentum_cache > 0
    SHA-256                     32 bytes, of everything before it

It holds only numbers and JSON: loading it runs no code (no pickle, and an object
dtype is refused). The trailing SHA-256 covers every other byte, so any truncation
or bit flip is reported, where a zip (``.npz``) leaves its own metadata unchecked
and a damaged ``.npy`` header inside it can ask numpy for any allocation. The
magic's bytes (like PNG's) show a text-mode transfer that rewrote line ends.

``save`` never destroys the last good file: it writes a temporary file in the same
folder, ``.<name>.<random>.tmp``, flushes and fsyncs it, and only then renames it
over ``path`` (atomic on POSIX and Windows), then fsyncs the folder so the rename
survives a power cut. On an exception (also KeyboardInterrupt, a full disk) the
temporary file is removed and ``path`` is untouched. A process killed outright
(``kill -9``, power cut) mid-save leaves ``path`` as it was, plus at most one stray
``.<name>.<random>.tmp``: ``load`` never reads it, the next ``save`` does not
touch it (another process may be writing it), and deleting it is always safe.

numpy is imported by each function, not by the module: ``import lookahead_inject``
must not need it (see lookahead.py); every caller here has a model, so TF's numpy.
"""

import binascii
import hashlib
import io
import json
import math
import numbers
import os
import struct
import sys

from .errors import InvalidArgumentError, StateFileError
from .rule import OPTIMIZER_STATES, PULLBACK

FORMAT = "lookahead_inject.state/2"
MAGIC = b"\x89LOOKAHEAD\r\n\x1a\n"
_LENGTH = struct.Struct("<Q")
_DIGEST_SIZE = hashlib.sha256().digest_size
_CHUNK = 1 << 20
_FIELDS = ("format", "step", "k", "alpha", "weights")


def make(step, slow_weights, k, alpha, optimizer_state="keep", momentum_cache=()):
    import numpy as np
    return {"step": int(step), "slow_weights": [np.array(w) for w in slow_weights],
            "k": int(k), "alpha": float(alpha), "optimizer_state": optimizer_state,
            "momentum_cache": [np.array(w) for w in momentum_cache]}


def check_compatible(state, k, alpha, like, optimizer_state="keep"):
    """Refuse ``state`` unless it fits a Lookahead(k, alpha, optimizer_state) over
    weights ``like``.

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

    def check_arrays(arrays, what):
        if len(arrays) != len(like):
            problems.append("it holds {} {}s, the model has {} trainable weights".format(
                len(arrays), what, len(like)))
            return
        for i, (array, (name, shape, dtype)) in enumerate(zip(arrays, like)):
            array = np.asarray(array)
            if tuple(array.shape) != tuple(shape) or array.dtype != np.dtype(dtype):
                problems.append("{} {} is {} {}, the model's {} is {} {}".format(
                    what, i, array.dtype, tuple(array.shape), name, np.dtype(dtype),
                    tuple(shape)))
    check_arrays(state["slow_weights"], "slow weight")
    momentum = state.get("momentum_cache") or []
    if saved_option == optimizer_state == PULLBACK:
        check_arrays(momentum, "momentum copy")
    elif momentum and saved_option == optimizer_state:
        problems.append("it holds momentum copies, which only optimizer_state='pullback' has")
    if int(state["step"]) < 0:
        problems.append("its step is negative ({})".format(state["step"]))
    if problems:
        raise InvalidArgumentError(
            "This Lookahead state does not fit the model: " + "; ".join(problems) + ".")


def checked_values(state, k, alpha, like, optimizer_state="keep"):
    """``state``'s slow weights as arrays, its step as int64 and its momentum copies
    as arrays (empty unless "pullback"), after ``check_compatible``."""
    import numpy as np
    check_compatible(state, k, alpha, like, optimizer_state)
    return ([np.asarray(w) for w in state["slow_weights"]], np.int64(state["step"]),
            [np.asarray(w) for w in state.get("momentum_cache") or []])


# -- save ---------------------------------------------------------------------

def save(path, state, like):
    """Write ``state`` to exactly ``path``, atomically; ``like`` as in ``check_compatible``.

    Either ``path`` holds the complete new state afterwards or, whatever happened
    (exception, Ctrl-C, full disk, ``kill -9``), it still holds what it held before.
    """
    parts = _parts(state, like)
    target = os.path.realpath(os.fspath(path))     # through a symlink: keep the link
    folder, name = os.path.split(target)
    temp, out = _create_temp(folder, name)
    try:
        with out:
            for part in parts:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        _keep_mode(target, temp)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def to_bytes(state, like):
    """``state`` in the file format ``save`` writes, as bytes (Keras 3 files carry them in
    a section of their own: backends/common/keras3_files.py)."""
    return b"".join(bytes(part) for part in _parts(state, like))


def _parts(state, like):
    """The pieces of the file, in order, the SHA-256 of all others last."""
    import numpy as np
    option = state.get("optimizer_state", "keep")
    check_compatible(state, state.get("k"), state.get("alpha"), like, option)
    # not ascontiguousarray: before numpy 2 it turns a 0-d array (a scalar weight) 1-d
    arrays = [_little_endian(np.asarray(w, order="C")) for w in state["slow_weights"]]
    momentum = [_little_endian(np.asarray(w, order="C"))
                for w in state.get("momentum_cache") or []]
    header = {"format": FORMAT, "step": int(state["step"]), "k": int(state["k"]),
              "alpha": float(state["alpha"]),
              "weights": [{"name": str(name), "shape": [int(n) for n in array.shape],
                           "dtype": array.dtype.name}
                          for (name, _, _), array in zip(like, arrays)]}
    if option != "keep" or momentum:       # a "keep" file stays as main's format wrote it
        header.update(optimizer_state=option, momentum_cache=len(momentum))
    arrays += momentum
    header = json.dumps(header, sort_keys=True).encode("utf-8")
    parts = [MAGIC, _LENGTH.pack(len(header)), header] + \
        [a.reshape(-1).view(np.uint8) for a in arrays]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return parts + [digest.digest()]


def _little_endian(array):
    # Numeric arrays are stored little-endian so a file moves between hosts;
    # other dtypes (TF's bfloat16 from ml_dtypes) have no byte order numpy can swap.
    if array.dtype.kind in "biufc" and array.dtype.byteorder not in ("<", "|") and \
            not (array.dtype.byteorder == "=" and sys.byteorder == "little"):
        return array.astype(array.dtype.newbyteorder("<"))
    return array


def _create_temp(folder, name):
    """A new file ``folder/.name.<random>.tmp`` open for binary writing.

    Not tempfile.mkstemp: it creates mode 0600, and the state file should get the
    permissions a plain open() gives (0666 minus the umask, applied by the OS)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(folder, ".{}.{}.tmp".format(
            name, binascii.hexlify(os.urandom(6)).decode("ascii")))
        try:
            fd = os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        return temp, os.fdopen(fd, "wb")


def _keep_mode(target, temp):
    """Overwriting keeps the permissions the user gave the existing file."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return
    os.chmod(temp, mode & 0o7777)


def _fsync_folder(folder):
    # POSIX makes a rename durable only once its directory is synced; Windows
    # cannot open a directory, and some file systems refuse it (EINVAL): the
    # rename itself is still atomic there.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- load ---------------------------------------------------------------------

_FOREIGN = [
    (b"\x93NUMPY", "a numpy .npy array file"),
    (b"PK\x03\x04", "a zip archive (.npz, .keras, ...)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 weights? those load with model.load_weights)"),
    (b"\x80", "a Python pickle (never unpickled here)"),
]


def load(path):
    """Read what ``save`` wrote to ``path``.

    Raises ``StateFileError`` naming ``path`` and what is wrong with it if it is
    missing, empty, truncated, damaged, another kind of file, or its header lacks or
    garbles a field.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            return _read(path, source, size)
    except OSError as error:
        raise _error(path, "cannot read it: {}".format(error.strerror or error)) from None


def from_bytes(data, where):
    """The state in ``data`` (what ``to_bytes`` made); ``where`` names it in the
    ``StateFileError`` that a damaged one raises (its ``problem`` says what is wrong)."""
    return _read(where, io.BytesIO(data), len(data))


def _error(path, problem):
    return StateFileError("Cannot load the Lookahead state file {!r}: {}. Load a file that "
                          "la.save() wrote.".format(path, problem), path, problem)


def _read(path, source, size):
    import numpy as np
    start = source.read(len(MAGIC))
    if not start:
        raise _error(path, "it is empty (0 bytes), not a Lookahead state file")
    if len(start) == len(MAGIC) and sum(a != b for a, b in zip(start, MAGIC)) == 1:
        raise _error(path, "it is damaged: a byte of its signature (its first bytes) is altered")
    if start != MAGIC[:len(start)]:
        raise _error(path, "it is not a Lookahead state file but " + _describe(start, source))
    head = len(MAGIC) + _LENGTH.size
    if size < head + _DIGEST_SIZE:
        raise _error(path, "it is truncated ({} bytes: not even a header)".format(size))
    if not _digest_matches(source, size):
        raise _error(path, _why_digest_differs(source, size))

    source.seek(len(MAGIC))
    header_size = _LENGTH.unpack(source.read(_LENGTH.size))[0]
    if header_size > size - head - _DIGEST_SIZE:
        raise _error(path, "its header length ({}) exceeds the file".format(header_size))
    try:
        header = json.loads(source.read(header_size).decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise _error(path, "its header is not JSON ({})".format(error)) from None
    step, k, alpha, specs, option, copies = _checked_header(path, header)
    specs = specs + specs[:copies]         # the momentum copies are shaped like the weights

    expected = head + header_size + sum(nbytes for _, _, nbytes in specs) + _DIGEST_SIZE
    if expected != size:
        raise _error(path, "its header describes {} bytes of slow weights, the file holds "
                           "{}".format(expected - head - header_size - _DIGEST_SIZE,
                                       size - head - header_size - _DIGEST_SIZE))
    arrays = []
    for dtype, shape, nbytes in specs:
        try:
            array = np.empty(shape, _file_dtype(dtype))
        except (ValueError, OverflowError, MemoryError) as error:
            raise _error(path, "its slow weight shape {} is impossible ({})".format(
                list(shape), error)) from None
        if source.readinto(memoryview(array.reshape(-1).view(np.uint8))) != nbytes:
            raise _error(path, "it changed while being read")
        arrays.append(array.astype(dtype, copy=False))
    count = len(specs) - copies
    return make(step, arrays[:count], k, alpha, option, arrays[count:])


def _describe(start, source):
    start += source.read(64 - len(start))
    for magic, kind in _FOREIGN:
        if start.startswith(magic):
            return kind
    text = start.decode("utf-8", "replace")
    # The 64 bytes may end inside a multi-byte character: only the last one may be garbled.
    if all(c.isprintable() or c in "\t\r\n" for c in text[:-1]):
        return "a text file starting with {!r}".format(text.splitlines()[0][:40])
    return "a binary file starting with {!r}".format(start[:16])


def _digest_matches(source, size):
    source.seek(0)
    digest, left = hashlib.sha256(), size - _DIGEST_SIZE
    while left:
        chunk = source.read(min(left, _CHUNK))
        if not chunk:
            return False
        digest.update(chunk)
        left -= len(chunk)
    return digest.digest() == source.read(_DIGEST_SIZE)


def _why_digest_differs(source, size):
    """Truncated, if the (unverified) header asks for more bytes than there are."""
    import numpy as np
    source.seek(len(MAGIC))
    header_size = _LENGTH.unpack(source.read(_LENGTH.size))[0]
    head = len(MAGIC) + _LENGTH.size
    if head + header_size + _DIGEST_SIZE > size:
        return ("it is truncated or damaged: its header length ({} bytes) runs past the "
                "end of the file ({} bytes)".format(header_size, size))
    try:
        header = json.loads(source.read(header_size).decode("utf-8"))
        weights = header["weights"]
        # Each momentum copy (optimizer_state="pullback") is the size of its weight.
        copies = 2 if header.get("momentum_cache") else 1
        expected = head + header_size + _DIGEST_SIZE + copies * sum(
            int(np.prod(w["shape"])) * _named_dtype(w["dtype"]).itemsize for w in weights)
    except Exception:           # a damaged header may hold anything: the verdict stays "damaged"
        expected = size
    if expected > size:
        return "it is truncated ({} of {} bytes), e.g. by an interrupted copy".format(
            size, expected)
    return ("it is damaged: its content does not match the SHA-256 checksum at its end "
            "(a bit flip, or it was cut or altered)")


def _checked_header(path, header):
    """(step, k, alpha, [(dtype, shape, nbytes)], optimizer_state, number of momentum
    copies) after checking every field of ``header``."""
    import numpy as np
    if not isinstance(header, dict):
        raise _error(path, "its header is a JSON {}, not an object".format(type(header).__name__))
    missing = [field for field in _FIELDS if field not in header]
    if missing:
        raise _error(path, "its header lacks {}".format(", ".join(missing)))
    if header["format"] != FORMAT:
        raise _error(path, "it has format {!r}, this lookahead_inject reads {!r}".format(
            header["format"], FORMAT))

    def is_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def bad(field, value, want):
        return _error(path, "its {} is {!r}, expected {}".format(field, value, want))
    step, k, alpha, weights = header["step"], header["k"], header["alpha"], header["weights"]
    if not is_int(step) or step < 0:
        raise bad("step", step, "an int >= 0")
    if not is_int(k) or k < 1:
        raise bad("k", k, "an int >= 1")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
            not (math.isfinite(alpha) and 0 <= alpha <= 1):
        raise bad("alpha", alpha, "a number in [0, 1]")
    if not isinstance(weights, list):
        raise bad("weights", weights, "a list")
    specs = []
    for i, weight in enumerate(weights):
        field = "weights[{}]".format(i)
        if not isinstance(weight, dict) or set(weight) != {"name", "shape", "dtype"}:
            raise bad(field, weight, "an object with name, shape and dtype")
        shape, dtype = weight["shape"], weight["dtype"]
        if not isinstance(shape, list) or not all(is_int(n) and n >= 0 for n in shape):
            raise bad(field + ".shape", shape, "a list of ints >= 0")
        dtype = _named_dtype(dtype) if isinstance(dtype, str) else None
        if dtype is None or dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
            raise bad(field + ".dtype", weight["dtype"], "a numeric dtype name such as 'float32'")
        nbytes = dtype.itemsize
        for n in shape:
            nbytes *= n
        specs.append((dtype, tuple(shape), nbytes))
    option = header.get("optimizer_state", "keep")
    if option not in OPTIMIZER_STATES:
        raise bad("optimizer_state", option, "one of " + ", ".join(map(repr, OPTIMIZER_STATES)))
    copies = header.get("momentum_cache", 0)
    if not is_int(copies) or copies not in ((0, len(specs)) if option == PULLBACK else (0,)):
        raise bad("momentum_cache", copies, "0 or, for 'pullback', the number of weights")
    return step, k, float(alpha), specs, option, copies


def _named_dtype(name):
    """The numpy dtype ``name`` names, or None."""
    import numpy as np
    # TF's own numpy type first, while TF is imported: TF 1.x's bfloat16 has no name numpy
    # looks up, and TF 2.9 - 2.12's bfloat16 is not the one ml_dtypes registers under that
    # name (the two compare unequal), while the model's weights have TF's.
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            return np.dtype(tf.as_dtype(name).as_numpy_dtype)
        except (TypeError, ValueError, AttributeError):
            pass
    try:
        return np.dtype(name)
    except TypeError:
        return None


def _file_dtype(dtype):
    return dtype.newbyteorder("<") if dtype.kind in "biufc" else dtype
