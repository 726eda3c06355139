"""The backends' layout keeps what it promises, read from the source (no backend is
imported, so this runs in every env): each row of the dispatch table names a module with
one ``BACKEND``, and the Keras 3 JAX / PyTorch family imports no TensorFlow when loaded."""

import ast
import os

from lookahead_inject import dispatch

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "lookahead_inject")


def source_path(module):
    """The file of ``module`` ("lookahead_inject.backends.graph"), or None outside the package."""
    parts = module.split(".")
    if parts[0] != "lookahead_inject":
        return None
    base = os.path.join(PACKAGE, *parts[1:])
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def imported_at_load(module):
    """The modules ``module`` imports when it is loaded (its top-level imports; imports
    inside functions run only when called)."""
    path = source_path(module)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            found.add(source)
            # `from . import name` may import a submodule.
            found.update(source + "." + alias.name for alias in node.names
                         if source_path(source + "." + alias.name))
    # A package's __init__ runs before any module in it.
    parts = module.split(".")
    found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def loaded_with(module):
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if source_path(current):
            todo.extend(imported_at_load(current))
    return seen


def test_every_dispatch_row_names_a_module_with_one_backend_record():
    for row in dispatch.TABLE:
        path = source_path("lookahead_inject.backends." + row.module)
        assert path, row
        assert open(path).read().count("\nBACKEND = ") == 1, row


def tensorflow_modules(modules):
    return sorted(m for m in modules if m.split(".")[0] == "tensorflow"
                  or m.rpartition(".")[2].startswith("tf_"))


def test_the_keras3_jax_and_pytorch_backends_import_no_tensorflow_when_loaded():
    # LookaheadOptimizer's module too: it imports its TensorFlow step only on that backend.
    for name in ("native.keras3_jax", "native.keras3_torch", "native.lookahead_optimizer"):
        loaded = loaded_with("lookahead_inject.backends." + name)
        assert tensorflow_modules(loaded) == [], name
    # The walk sees TensorFlow where it is: Keras 3 on TF reaches it through tf_sync.
    assert "lookahead_inject.backends.common.tf_sync" in tensorflow_modules(
        loaded_with("lookahead_inject.backends.tf_hook.keras3_tf"))
