"""What TensorFlow is running: version, the Keras that builds the model, eager or graph.

A process can import two Kerases: ``keras`` (standalone Keras 2.2 / 2.3, its own
engine on TF 1.x) beside ``tf.keras``; or, from TF 2.16, Keras 3 (``import keras``)
beside tf-keras (``import tf_keras``), either of which ``tf.keras`` may be
(TF_USE_LEGACY_KERAS). The model decides which one counts (``model_keras``,
``model_flavour``).

All version parsing of the library lives here (with ``packaging``); the dispatch
table and the backends only compare the values this module produces.
"""

import collections

from packaging.version import Version

from .errors import UnsupportedEnvironmentError

#: Names for the Keras that ``tf.keras`` resolves to, or that built the model.
KERAS_BUNDLED = "tf.keras (bundled with TF)"   # TF 1.x - 2.5: tensorflow.python.keras
KERAS_2 = "keras 2"                             # TF 2.6 - 2.15: the separate keras 2 package
KERAS_TF_KERAS = "tf-keras"                     # TF >= 2.16: TF_USE_LEGACY_KERAS=1, import tf_keras
KERAS_3 = "keras 3"                             # TF >= 2.16 default / import keras, TF backend
KERAS_3_JAX = "keras 3 (jax backend)"           # KERAS_BACKEND=jax: TensorFlow not needed
KERAS_3_TORCH = "keras 3 (torch backend)"       # KERAS_BACKEND=torch: TensorFlow not needed
KERAS_3_OTHER_BACKEND = "keras 3 ({} backend)"  # numpy / openvino: no training step to hook
KERAS_STANDALONE = "keras (standalone)"         # `import keras` < 2.4: Keras 2.2 / 2.3, own engine

#: Standalone Keras stopped at 2.3: keras 2.4+ is a wrapper of tf.keras, keras 2.6+ is tf.keras.
LAST_STANDALONE = Version("2.4")
#: TF 2.16 made Keras 3 its tf.keras; tf-keras (Keras 2) stays importable beside it.
FIRST_KERAS_3_TF = Version("2.16")

GRAPH = "graph"
EAGER = "eager"


class Environment(
    collections.namedtuple(
        "Environment", "tf_version keras keras_version mode keras_backend")
):
    """The running TensorFlow as seen by ``inject``.

    ``tf_version`` is a ``packaging.version.Version``, or None when Keras 3 runs on
    JAX or PyTorch (TensorFlow, installed or not, plays no part then); ``keras``
    one of the ``KERAS_*`` names; ``mode`` ``"graph"`` or ``"eager"`` (Keras 3 on
    JAX / PyTorch: "eager", its step is a jitted or plain function per model);
    ``keras_backend`` the Keras 3 backend (``"tensorflow"``, ``"jax"``, ...) or
    ``None`` before Keras 3.
    """

    __slots__ = ()

    def describe(self):
        if self.tf_version is None:
            return keras_label(self.keras, self.keras_version)
        return "TensorFlow {} ({}), {} mode".format(
            self.tf_version, keras_label(self.keras, self.keras_version), self.mode)


def keras_label(keras, keras_version):
    """How ``detect``, ``info`` and compat_matrix.md name a Keras: "keras 2.2.5 (standalone)",
    "keras 3.15.1 (jax backend)"."""
    if keras == KERAS_STANDALONE:
        return "keras {} (standalone)".format(keras_version)
    if keras.startswith("keras 3 (") and keras_version:
        return keras.replace("keras 3", "keras " + keras_version, 1)
    return "{} {}".format(keras, keras_version or "").strip()


#: Which Python has TensorFlow wheels on PyPI, per TF minor (as ``pip index versions
#: tensorflow`` lists them for each Python), within the Pythons lookahead_inject
#: supports (3.7 - 3.13). The one table for every message that names a Python range
#: (tests/test_tools.py checks tox.ini's envs against it).
#:     (first TF, last TF, oldest Python, newest Python)
TF_PYTHONS = (
    ("1.14", "2.1", "3.7", "3.7"),
    ("2.2", "2.4", "3.7", "3.8"),
    ("2.5", "2.7", "3.7", "3.9"),
    ("2.8", "2.11", "3.7", "3.10"),    # 2.11.1, the last 2.11 patch, has no 3.7 wheel
    ("2.12", "2.13", "3.8", "3.11"),
    ("2.14", "2.15", "3.9", "3.11"),
    ("2.16", "2.19", "3.9", "3.12"),
    ("2.20", "2.20", "3.9", "3.13"),
    ("2.21", "2.21", "3.10", "3.13"),
)

#: The Pythons lookahead_inject itself supports (setup.py's python_requires and CI).
PYTHONS = ("3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


def _minor(text):
    return tuple(int(part) for part in str(text).split(".")[:2])


def pythons_for_tf(tf_version):
    """(oldest, newest) Python with wheels for this TF minor, or None outside the table."""
    wanted = _minor(tf_version)
    for first, last, oldest, newest in TF_PYTHONS:
        if _minor(first) <= wanted <= _minor(last):
            return oldest, newest
    return None


def tf_for_python(python_version):
    """(oldest, newest) TF minor with wheels for this Python, or None."""
    wanted = _minor(python_version)
    fitting = [(first, last) for first, last, oldest, newest in TF_PYTHONS
               if _minor(oldest) <= wanted <= _minor(newest)]
    if not fitting:
        return None
    return fitting[0][0], fitting[-1][1]


def tf_pythons_text():
    """The table as one line per row, for messages."""
    return "\n".join("  TF {:<12} Python {}".format(
        first if first == last else "{} - {}".format(first, last),
        oldest if oldest == newest else "{} - {}".format(oldest, newest))
        for first, last, oldest, newest in TF_PYTHONS)


def no_tensorflow_message(python_version, reason):
    """What to do when ``import tensorflow`` fails: the pip line that works on this Python."""
    fitting = tf_for_python(python_version)
    if fitting is None:
        advice = ("No TensorFlow release has wheels for Python {}: make a virtualenv with "
                  "Python {} - {} and install TensorFlow there.".format(
                      python_version, PYTHONS[0], PYTHONS[-1]))
    else:
        advice = ("Install it: `pip install tensorflow` gives the newest one for this Python "
                  "(TF {} - {} have wheels for Python {}); keep your own pin if your training "
                  "code has one. From a clone, `pip install \".[demo]\" tensorflow` adds the "
                  "demo's scikit-learn and matplotlib.".format(fitting[0], fitting[1],
                                                               _short(python_version)))
    return ("TensorFlow is not installed in this Python {} ({}). lookahead_inject adds "
            "Lookahead to a compiled tf.keras model, so it needs the TensorFlow your training "
            "code uses. {}\nWhich TensorFlow installs on which Python:\n{}".format(
                python_version, reason, advice, tf_pythons_text()))


def _short(python_version):
    return ".".join(str(python_version).split(".")[:2])


def _import_tensorflow():
    import platform
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise UnsupportedEnvironmentError(
            no_tensorflow_message(platform.python_version(), exc)) from exc
    except Exception as exc:   # TF present but broken by its neighbours
        raise UnsupportedEnvironmentError(
            "TensorFlow is installed but failed to import: {}: {}. Old TensorFlow breaks "
            "with newer neighbours: TF 1.14 - 2.3 need numpy<1.19 and protobuf<3.21 (TF 1.14 "
            "also h5py<3); pin those next to tensorflow.".format(type(exc).__name__, exc)) from exc
    return tf


def _keras_flavour(tf):
    """Which Keras ``tf.keras`` is, read from where its Model class lives."""
    model_module = tf.keras.Model.__module__
    if model_module.startswith("tensorflow"):
        return KERAS_BUNDLED, getattr(tf.keras, "__version__", None)
    if model_module.startswith("tf_keras"):
        import tf_keras
        return KERAS_TF_KERAS, tf_keras.__version__
    import keras
    if is_keras_3(keras.__version__):
        return KERAS_3, keras.__version__
    return KERAS_2, keras.__version__


def keras_2_behind_tf_keras():
    """The Keras 2 module ``tf.keras`` is (TF 2.0 - 2.15; tf-keras on TF 2.16+ with
    TF_USE_LEGACY_KERAS=1), or ``(None, why not)``: ``(module, None)``. Imports TensorFlow."""
    tf = _import_tensorflow()
    version = Version(tf.__version__)
    if version.major < 2:
        return None, "TensorFlow is {}".format(tf.__version__)
    flavour, keras_version = _keras_flavour(tf)
    if flavour == KERAS_3:
        return None, "tf.keras is Keras {} (TF {})".format(keras_version, tf.__version__)
    if flavour == KERAS_TF_KERAS:
        import tf_keras
        return tf_keras, None
    return tf.keras, None


def _keras3_backend():
    # Keras 3 picks its backend from KERAS_BACKEND or ~/.keras/keras.json; ask it.
    import keras
    return keras.backend.backend()


def keras_module(tf_version):
    """The Keras that builds models here, for a ``detect`` that found ``tf_version``:
    Keras 3 itself when that is None (JAX / PyTorch; TensorFlow, installed or not,
    plays no part), else ``tf.keras``."""
    if tf_version is None:
        import keras
        return keras
    import tensorflow as tf
    return tf.keras


def model_keras_module(model):
    """The Keras package that built ``model``: ``tf_keras``, or ``keras`` (Keras 3, or
    standalone Keras 2.2 / 2.3), else the one ``keras_module`` gives. Classes that go
    into the model's own training (callbacks) must come from it: from TF 2.16
    ``tf.keras`` may be the other one of Keras 3 and tf-keras (TF_USE_LEGACY_KERAS),
    whose classes its fit does not take. Without a model: ``keras_module``'s."""
    import importlib
    flavour = model_flavour(model) if model is not None else None
    if flavour is not None:
        return importlib.import_module("tf_keras" if flavour[0] == KERAS_TF_KERAS else "keras")
    if model is not None and model_keras(model):
        return importlib.import_module("keras")
    return keras_module(detect_environment(model).tf_version)


def _built_by(package, model):
    return any(cls.__module__.split(".")[0] == package for cls in type(model).__mro__)


def model_keras(model):
    """The version of the standalone Keras (< 2.4) whose engine built ``model``, else None.

    Read from the modules of the classes in the model's MRO: standalone Keras
    models derive from ``keras.engine.training.Model``. From keras 2.6 to 2.15
    ``tf.keras`` classes live in the ``keras`` package too, and Keras 3's there as
    well; the version tells them apart.
    """
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] == "keras":
            import keras
            if Version(keras.__version__) < LAST_STANDALONE:
                return keras.__version__
            return None
    return None


def is_keras_3(version):
    return Version(version).major >= 3


def model_flavour(model):
    """``(KERAS_TF_KERAS or KERAS_3, version)`` when ``model`` is built by tf-keras
    (``import tf_keras``) or Keras 3 (``import keras``), else None (then ``tf.keras``,
    or standalone Keras, is the model's Keras).

    From TF 2.16 both can be importable; ``tf.keras`` is one of them (Keras 3, or
    tf-keras with TF_USE_LEGACY_KERAS=1), and a model of the other one trains through
    its own engine, so the model's classes decide, not ``tf.keras``.
    """
    if _built_by("tf_keras", model):
        import tf_keras
        return KERAS_TF_KERAS, tf_keras.__version__
    if _built_by("keras", model):
        import keras
        # keras 2.x classes live in the `keras` package too (standalone 2.2 / 2.3:
        # model_keras; 2.6 - 2.15: tf.keras itself): only Keras 3 is told apart here.
        if is_keras_3(keras.__version__):
            return KERAS_3, keras.__version__
    return None


def both_kerases(environment):
    """``[("import keras", Environment), ("import tf_keras", Environment)]``: what
    ``detect`` sees for a model of Keras 3 and for one of tf-keras, when both are
    importable beside TF >= 2.16 (``environment`` is ``detect_environment()``'s),
    else ``[]``. Each model trains through its own Keras, whichever ``tf.keras`` is."""
    import importlib
    import importlib.util
    if environment.tf_version is None or environment.tf_version < FIRST_KERAS_3_TF:
        return []
    found = []
    for package, keras in (("keras", KERAS_3), ("tf_keras", KERAS_TF_KERAS)):
        if importlib.util.find_spec(package) is None:
            return []
        try:
            version = getattr(importlib.import_module(package), "__version__", None)
        except Exception:    # broken by its neighbours; inject never sees its models either
            return []
        if not version or is_keras_3(version) != (keras == KERAS_3):
            return []
        found.append(("import " + package, environment._replace(
            keras=keras, keras_version=version,
            keras_backend=_keras3_backend() if keras == KERAS_3 else None)))
    return found


def installed_standalone_keras(tf_version):
    """The version of the standalone Keras ``import keras`` gives here, or None.

    Imports ``keras`` only when TF < 2.4 (from there on ``keras`` is, or wraps,
    tf.keras, or is Keras 3) and a ``keras`` package is installed.
    """
    import importlib.util
    if tf_version >= LAST_STANDALONE or importlib.util.find_spec("keras") is None:
        return None
    try:
        import keras
    except Exception:    # broken by its neighbours; inject never sees its models either
        return None
    version = getattr(keras, "__version__", None)
    return version if version and Version(version) < LAST_STANDALONE else None


def keras3_without_tensorflow():
    """``(keras version, backend)`` when ``import keras`` is Keras 3 set to a backend
    other than TensorFlow, else None. Never imports TensorFlow, nor keras unless
    it is installed (importing Keras 3 on the TensorFlow backend imports TF)."""
    import importlib.util
    import os
    if importlib.util.find_spec("keras") is None:
        return None
    if os.environ.get("KERAS_BACKEND", "") in ("", "tensorflow") and not _keras_json_backend():
        return None
    try:
        import keras
    except Exception:
        return None
    version = getattr(keras, "__version__", "0")
    if Version(version).major < 3 or not hasattr(keras, "backend"):
        return None
    backend = keras.backend.backend()
    return (version, backend) if backend != "tensorflow" else None


def _keras_json_backend():
    # Keras 3 reads its backend from $KERAS_HOME/keras.json (default ~/.keras) when
    # KERAS_BACKEND is unset; read it ourselves so TF-only envs never import keras here.
    import json
    import os
    if os.environ.get("KERAS_BACKEND"):
        return None
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if backend not in (None, "tensorflow") else None


def detect_environment(model=None):
    """Inspect the running TensorFlow (and which Keras built ``model``, if given);
    raises a clear error when there is no TensorFlow and no Keras 3 on JAX / PyTorch."""
    keras3 = keras3_without_tensorflow()
    # A tf-keras model (TF_USE_LEGACY_KERAS=1) trains on TF whatever KERAS_BACKEND says.
    if keras3 is not None and (model is None or _built_by("keras", model)):
        version, backend = keras3
        keras = {"jax": KERAS_3_JAX, "torch": KERAS_3_TORCH}.get(
            backend, KERAS_3_OTHER_BACKEND.format(backend))
        return Environment(None, keras, version, EAGER, backend)
    tf = _import_tensorflow()
    tf_version = Version(tf.__version__)
    standalone = model_keras(model) if model is not None else None
    flavour = model_flavour(model) if model is not None else None
    if standalone:
        keras, keras_version = KERAS_STANDALONE, standalone
    elif flavour:
        keras, keras_version = flavour
    else:
        keras, keras_version = _keras_flavour(tf)
    mode = EAGER if tf.executing_eagerly() else GRAPH
    keras_backend = _keras3_backend() if keras == KERAS_3 else None
    return Environment(tf_version, keras, keras_version, mode, keras_backend)
