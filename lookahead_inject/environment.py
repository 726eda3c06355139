"""What TensorFlow is running: version, the Keras that builds the model, eager or graph.

A process can import both ``keras`` (standalone Keras 2.2 / 2.3, its own engine on
TF 1.x) and ``tf.keras``; the model decides which one counts (``model_keras``).

All version parsing of the library lives here (with ``packaging``); the dispatch
table and the backends only compare the values this module produces.
"""

import collections

from packaging.version import Version

from .errors import UnsupportedEnvironmentError

#: Names for the Keras that ``tf.keras`` resolves to.
KERAS_BUNDLED = "tf.keras (bundled with TF)"   # TF 1.x - 2.5: tensorflow.python.keras
KERAS_2 = "keras 2"                             # TF 2.6 - 2.15: the separate keras 2 package
KERAS_TF_KERAS = "tf-keras"                     # TF >= 2.16 with TF_USE_LEGACY_KERAS=1
KERAS_3 = "keras 3"                             # TF >= 2.16 default, TensorFlow backend
KERAS_3_OTHER_BACKEND = "keras 3 ({} backend)"  # JAX / torch / numpy: no TF step to hook
KERAS_STANDALONE = "keras (standalone)"         # `import keras` < 2.4: Keras 2.2 / 2.3, own engine

#: Standalone Keras stopped at 2.3: keras 2.4+ is a wrapper of tf.keras, keras 2.6+ is tf.keras.
LAST_STANDALONE = Version("2.4")

GRAPH = "graph"
EAGER = "eager"


class Environment(
    collections.namedtuple(
        "Environment", "tf_version keras keras_version mode keras_backend")
):
    """The running TensorFlow as seen by ``inject``.

    ``tf_version`` is a ``packaging.version.Version``; ``keras`` one of the
    ``KERAS_*`` names; ``mode`` ``"graph"`` or ``"eager"``; ``keras_backend`` the
    Keras 3 backend (``"tensorflow"``, ``"jax"``, ...) or ``None`` before Keras 3.
    """

    __slots__ = ()

    def describe(self):
        return "TensorFlow {} ({}), {} mode".format(
            self.tf_version, keras_label(self.keras, self.keras_version), self.mode)


def keras_label(keras, keras_version):
    """How ``detect``, ``info`` and compat_matrix.md name a Keras: "keras 2.2.5 (standalone)"."""
    if keras == KERAS_STANDALONE:
        return "keras {} (standalone)".format(keras_version)
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
    if Version(keras.__version__).major >= 3:
        return KERAS_3, keras.__version__
    return KERAS_2, keras.__version__


def _keras3_backend():
    # Keras 3 picks its backend from KERAS_BACKEND or ~/.keras/keras.json; ask it.
    import keras
    return keras.backend.backend()


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


def detect_environment(model=None):
    """Inspect the running TensorFlow (and which Keras built ``model``, if given);
    raises a clear error when there is no TensorFlow."""
    tf = _import_tensorflow()
    tf_version = Version(tf.__version__)
    standalone = model_keras(model) if model is not None else None
    if standalone:
        keras, keras_version = KERAS_STANDALONE, standalone
    else:
        keras, keras_version = _keras_flavour(tf)
    mode = EAGER if tf.executing_eagerly() else GRAPH
    keras_backend = _keras3_backend() if keras == KERAS_3 else None
    if keras_backend not in (None, "tensorflow"):
        keras = KERAS_3_OTHER_BACKEND.format(keras_backend)
    return Environment(tf_version, keras, keras_version, mode, keras_backend)
