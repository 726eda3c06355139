"""The dispatch table: which backend module serves which TensorFlow.

A row is (backend, its module, TF versions, Keras, Keras versions, execution modes). The
Keras is the one that built the model: the one behind ``tf.keras``; the other one of
Keras 3 (``import keras``) and tf-keras (``import tf_keras``) from TF 2.16; or the
standalone ``keras`` package (2.2 / 2.3, with an engine of its own), for which
the Keras version picks the row ("" means any). Keras 3 on JAX or PyTorch needs no
TensorFlow: its rows have no TF versions. The first row that fits wins. A row names its backend's
module under ``backends/`` (by family: graph, tf_hook, native); backends are imported only
when chosen, so importing lookahead_inject never imports TensorFlow.
"""

import collections
import importlib

from packaging.specifiers import SpecifierSet

from . import environment as env
from .errors import InvalidArgumentError, UnsupportedEnvironmentError

Row = collections.namedtuple("Row", "backend module tf_versions keras keras_versions modes")

#: The Keras column: Keras 2 (behind tf.keras, or tf-keras), standalone Keras, the one
#: bundled with TF 1.x, Keras 3 on TF, JAX, PyTorch.
KERAS_2 = (env.KERAS_BUNDLED, env.KERAS_2, env.KERAS_TF_KERAS)
STANDALONE, BUNDLED, KERAS_3 = (env.KERAS_STANDALONE,), (env.KERAS_BUNDLED,), (env.KERAS_3,)
JAX, TORCH = (env.KERAS_3_JAX,), (env.KERAS_3_TORCH,)
GRAPH, EAGER = (env.GRAPH,), (env.EAGER,)

TABLE = (
    #   backend         module                 TF versions     Keras       Keras versions  modes
    Row("keras22",      "graph.keras22",       ">=1.14,<2",    STANDALONE, ">=2.2.4,<2.3", GRAPH),
    Row("keras23",      "graph.keras23",       ">=1.14,<2",    STANDALONE, ">=2.3,<2.4",   GRAPH),
    Row("tf114",        "graph.tf114",         ">=1.14,<1.15", BUNDLED,    "",             GRAPH),
    Row("tf115",        "graph.tf115",         ">=1.15,<2",    BUNDLED,    "",             GRAPH),
    Row("tf2_graph",    "graph.tf2_graph",     ">=2,<3",       KERAS_2,    "",             GRAPH),
    Row("tf2_eager",    "tf_hook.tf2_eager",   ">=2,<3",       KERAS_2,    "",             EAGER),
    Row("keras3",       "tf_hook.keras3_tf",   ">=2.16,<3",    KERAS_3,    "",             EAGER),
    Row("keras3_jax",   "native.keras3_jax",   "",             JAX,        ">=3.15,<4",    EAGER),
    Row("keras3_torch", "native.keras3_torch", "",             TORCH,      ">=3.15,<4",    EAGER),
)

BACKEND_NAMES = tuple(row.backend for row in TABLE)


def _fits(row, environment):
    versions = SpecifierSet(row.tf_versions, prereleases=True)
    keras_versions = SpecifierSet(row.keras_versions, prereleases=True)
    if (environment.tf_version is None) != (not row.tf_versions):
        return False
    return ((environment.tf_version is None or environment.tf_version in versions)
            and environment.keras in row.keras
            and (not row.keras_versions
                 or keras_versions.contains(str(environment.keras_version)))
            and environment.mode in row.modes)


def why(environment, backend, built_by=None):
    """One sentence: which row of the table chose ``backend`` for ``environment``.

    ``built_by`` ("import tf_keras") names the Keras that builds the model when that is
    not ``tf.keras`` (TF >= 2.16 with both Keras 3 and tf-keras importable).
    """
    row = next(r for r in TABLE if r.backend == backend)
    if environment.keras == env.KERAS_STANDALONE:
        keras = "the model is built by {} (in {})".format(
            env.keras_label(environment.keras, environment.keras_version), row.keras_versions)
    elif built_by:
        keras = "the model is built by {} ({})".format(built_by, environment.keras)
    else:
        keras = "tf.keras is {}".format(environment.keras)
    if environment.tf_version is None:
        return "{} is in {} (TensorFlow plays no part): row {!r} of the dispatch table".format(
            env.keras_label(environment.keras, environment.keras_version), row.keras_versions,
            backend)
    return "TF {} is in {}, {}, {} mode: row {!r} of the dispatch table".format(
        environment.tf_version, row.tf_versions, keras, environment.mode, backend)


def supported_summary():
    """One line per row, for error messages and ``info``."""
    return "\n".join(
        "  {:<12} TF {:<14} {}{} ({})".format(
            row.backend, row.tf_versions or "not needed", " / ".join(row.keras),
            " " + row.keras_versions if row.keras_versions else "", ", ".join(row.modes))
        for row in TABLE)


def choose_backend(environment, requested="auto"):
    """The backend name for ``environment``; ``requested`` may force one that fits."""
    if requested != "auto" and requested not in BACKEND_NAMES:
        raise InvalidArgumentError(
            "backend={!r} is not a backend of lookahead_inject. Use backend='auto' "
            "(the default) or one of {}.".format(requested, ", ".join(BACKEND_NAMES)))
    fitting = [row.backend for row in TABLE if _fits(row, environment)]
    if not fitting:
        raise UnsupportedEnvironmentError(
            "lookahead_inject has no backend for {}. Supported:\n{}\n{}".format(
                environment.describe(), supported_summary(), _fix_for(environment)))
    if requested == "auto":
        return fitting[0]
    if requested not in fitting:
        raise InvalidArgumentError(
            "backend={!r} does not fit the running {}; the backend that fits is "
            "{!r}. Pass backend='auto' to let inject choose.".format(
                requested, environment.describe(), fitting[0]))
    return requested


def _fix_for(environment):
    if environment.keras == env.KERAS_STANDALONE:
        if environment.tf_version.major >= 2:
            return ("Standalone Keras {} trains through tf.keras' own engine on TF 2, where "
                    "lookahead_inject supports tf.keras models: build the model with "
                    "`from tensorflow import keras` instead of `import keras`, or run "
                    "keras 2.2.5 / 2.3.1 on TF 1.14 / 1.15.".format(environment.keras_version))
        return ("Standalone keras {} is older than the versions lookahead_inject supports: "
                "install keras==2.2.5 or keras==2.3.1 (or build the model with "
                "tf.keras).".format(environment.keras_version))
    if environment.keras_backend in ("jax", "torch"):
        return ("lookahead_inject supports Keras 3 on {} from Keras 3.15: install "
                "keras>=3.15.".format(environment.keras_backend))
    if environment.keras_backend not in (None, "tensorflow"):
        return ("Keras 3 runs on the {} backend here, which cannot train. Set "
                "KERAS_BACKEND to tensorflow, jax or torch before importing keras (or in "
                "~/.keras/keras.json).".format(environment.keras_backend))
    if environment.keras == env.KERAS_3 and environment.mode == env.GRAPH:
        return ("Keras 3 has no graph mode. Remove tf.compat.v1.disable_eager_execution(), "
                "or install tf-keras and set TF_USE_LEGACY_KERAS=1 to keep Keras 2 in graph mode "
                "(a model built by `import keras` stays Keras 3 even then: build it with "
                "tf.keras, or `import tf_keras as keras`).")
    return ("Install one of these TensorFlow versions (or switch execution mode) "
            "to use Lookahead.")


def load_backend(name):
    """The ``backends.Backend`` of the backend ``name``: its module imported (this is the
    first TF-touching import)."""
    row = next(r for r in TABLE if r.backend == name)
    return importlib.import_module("lookahead_inject.backends." + row.module).BACKEND
