"""The dispatch table: which backend module serves which TensorFlow.

A row is (backend, TF versions, Keras behind tf.keras, execution mode). The
first row that fits the running TensorFlow wins. Backends are imported only
when chosen, so importing lookahead_inject never imports TensorFlow.
"""

import collections
import importlib

from packaging.specifiers import SpecifierSet

from . import environment as env
from .errors import InvalidArgumentError, UnsupportedEnvironmentError

Row = collections.namedtuple("Row", "backend tf_versions keras modes")

KERAS_2_FAMILY = (env.KERAS_BUNDLED, env.KERAS_2, env.KERAS_TF_KERAS)

TABLE = (
    #   backend       TF versions            Keras behind tf.keras   modes
    Row("tf114",      ">=1.14,<1.15",        (env.KERAS_BUNDLED,),   (env.GRAPH,)),
    Row("tf115",      ">=1.15,<2",           (env.KERAS_BUNDLED,),   (env.GRAPH,)),
    Row("tf2_graph",  ">=2,<3",              KERAS_2_FAMILY,         (env.GRAPH,)),
)

BACKEND_NAMES = tuple(row.backend for row in TABLE)


def _fits(row, environment):
    versions = SpecifierSet(row.tf_versions, prereleases=True)
    return (environment.tf_version in versions
            and environment.keras in row.keras
            and environment.mode in row.modes)


def supported_summary():
    """One line per row, for error messages and ``info``."""
    return "\n".join(
        "  {:<10} TF {:<14} {} ({})".format(
            row.backend, row.tf_versions, " / ".join(row.keras), ", ".join(row.modes))
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
            "lookahead_inject has no backend for {}. Supported:\n{}\nInstall one "
            "of these TensorFlow versions (or switch execution mode) to use "
            "Lookahead.".format(environment.describe(), supported_summary()))
    if requested == "auto":
        return fitting[0]
    if requested not in fitting:
        raise InvalidArgumentError(
            "backend={!r} does not fit the running {}; the backend that fits is "
            "{!r}. Pass backend='auto' to let inject choose.".format(
                requested, environment.describe(), fitting[0]))
    return requested


def load_backend(name):
    """Import the backend module ``name`` (this is the first TF-touching import)."""
    return importlib.import_module("lookahead_inject.backends." + name)
