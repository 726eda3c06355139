"""The docs run: the python blocks of README.md and of its pages under docs/, and the public
docstrings' examples; what they say is checked against the code."""

import ast
import configparser
import doctest
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import harness
from common import docstring_examples
import lookahead_inject.errors
import lookahead_inject.lookahead
from lookahead_inject import dispatch, environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")

# The examples use TF 2's default (eager) optimizers; TF >= 2.11 graph mode would need
# tf.keras.optimizers.legacy, which the graph-mode suite covers.
eager_or_tf1 = pytest.mark.skipif(
    harness.GRAPH and harness.ENVIRONMENT.tf_version.major >= 2,
    reason="TF 2.x graph mode: the docs show TF 2's default eager mode (TF >= 2.11 graph "
           "mode needs legacy optimizers)")


LEGACY = "# legacy:"
NATIVE = "# Keras 3 on JAX or PyTorch:"
#: Blocks of LookaheadOptimizer, a Keras 3 class: they run on Keras 3's every backend.
KERAS3 = "# Keras 3:"


def read(path):
    with open(path) as handle:
        return handle.read()


def section(path, heading):
    """The text of the section ``## heading`` of the page at ``path`` (to the next ``## ``)."""
    text = read(path)
    start = text.index("\n## {}\n".format(heading))
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def pages():
    """README.md, then the pages under docs/ in the order README's "Documentation" section
    links them, a reader's order: the examples of the later pages go on from the README's."""
    linked = re.findall(r"\]\((docs/[\w-]+\.md)\)", section(README, "Documentation"))
    return [README] + [os.path.join(ROOT, path) for path in linked]


def page(name):
    """docs/``name``.md, the page a README section moved to."""
    return os.path.join(DOCS, name + ".md")


def readme_blocks(language, legacy=False, native=False, keras3=False):
    """The ``language`` blocks of README and its docs pages, in pages() order; the python
    ones for standalone Keras (first line "# legacy: ...") only with ``legacy``, those for
    Keras 3 on JAX / PyTorch (first line NATIVE) only with ``native``, those for Keras 3 on
    any backend (first line KERAS3) only with ``keras3``, all others only without."""
    blocks = [block for path in pages()
              for block in re.findall(r"```{}\n(.*?)```".format(language), read(path), re.S)]
    return [b for b in blocks
            if b.startswith(LEGACY) == legacy and b.startswith(NATIVE) == native
            and b.startswith(KERAS3) == keras3]


def test_readme_links_every_docs_page_and_each_links_back():
    on_disk = sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith(".md"))
    assert sorted(pages()[1:]) == on_disk     # so every page's blocks and quotes are checked
    assert len(set(pages())) == len(pages())
    for path in on_disk:
        title, blank, covers = read(path).split("\n")[:3]
        assert title.startswith("# ") and not blank, path
        assert "[README](../README.md)" in covers, path   # one line: what it covers, the way back


def _anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_readme_and_docs_lead_somewhere():
    checked = 0
    for path in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", read(path)):
            if "://" in target:
                continue
            file_part, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            assert os.path.exists(linked), "{}: {}".format(path, target)
            if anchor:
                headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", read(linked),
                                                          flags=re.S), re.M)
                assert anchor in [_anchor(h) for h in headings], "{}: {}".format(path, target)
            checked += 1
    assert checked >= 20


def test_readme_native_block_runs(tmp_path):
    # docs/keras3-jax-pytorch.md's block
    if harness.ENVIRONMENT.keras not in (environment.KERAS_3_JAX, environment.KERAS_3_TORCH):
        pytest.skip("{}: docs/keras3-jax-pytorch.md's Keras 3 on JAX / PyTorch block runs in the py311-keras3-jax "
                    "and -torch envs".format(harness.ENVIRONMENT.describe()))
    blocks = readme_blocks("python", native=True)
    assert len(blocks) == 1
    script = tmp_path / "native_block.py"
    script.write_text(blocks[0] + "\nassert la.step == 16, la.step\nprint('NATIVE BLOCK OK', "
                      "keras.backend.backend())\n")
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "NATIVE BLOCK OK " + harness.ENVIRONMENT.keras_backend in out.stdout


def test_keras3_optimizer_blocks_run(tmp_path):
    # README's "Coming from tfa.optimizers.Lookahead" and docs/lookahead-optimizer.md's.
    if not harness.KERAS_3:
        pytest.skip("{}: the LookaheadOptimizer blocks are Keras 3's (the Keras 3 envs on "
                    "TensorFlow, JAX and PyTorch run them)".format(harness.ENVIRONMENT.describe()))
    blocks = readme_blocks("python", keras3=True)
    assert len(blocks) == 2
    script = tmp_path / "keras3_blocks.py"
    script.write_text("\n".join(blocks) + "\nassert (optimizer.k, optimizer.alpha) == (6, 0.5)\n"
                      "assert restored.optimizer.get_config()['k'] == 5\n"
                      "print('KERAS 3 BLOCKS OK', keras.backend.backend())\n")
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stdout[-3000:]
    assert "KERAS 3 BLOCKS OK" in out.stdout


@pytest.mark.skipif(harness.GRAPH, reason="graph mode (TF 1.x; TF 2.x with eager disabled): the "
                    "README shows eager TF 2, and the MirroredStrategy block of docs/multiple-devices.md "
                    "is refused in graph mode")
def test_readme_python_blocks_run(tmp_path):
    harness.skip_without_tensorflow("README's python blocks build tf.keras models")
    # README's and then its docs pages' (saving, fine-tuning, multiple-devices), as one
    # script in pages() order, since the pages' examples go on from README's "Use".
    # In a fresh process, as a reader runs them: a MirroredStrategy made after the
    # strategies of other tests in this process collides with their collective keys.
    blocks = readme_blocks("python")
    assert len(blocks) >= 4
    checks = """
# two epochs of 8 batches and one train_on_batch, saved; then the mirrored model's
# one epoch of 256 / 64 steps
assert resumed_la.step == 2 * 8 + 1, resumed_la.step
assert la.step == 4 and la.model is model, la.step
print("README BLOCKS OK")
"""
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks) + checks)
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stdout[-3000:]
    assert "README BLOCKS OK" in out.stdout and "'backend':" in out.stdout


@pytest.mark.skipif(not harness.STANDALONE, reason="{}: docs/legacy.md's blocks import standalone "
                    "keras 2.2 / 2.3, installed in the -keras2xx tox envs".format(
                        harness.ENVIRONMENT.describe()))
def test_readme_legacy_block_runs(tmp_path):
    # docs/legacy.md's blocks as one script, in page order: the later legacy blocks use the
    # first one's imports and data.
    blocks = ["\n".join(readme_blocks("python", legacy=True))]
    checks = """
assert la.step == 2 * 8 and la.backend == detect(model)["backend"], la.step
print("LEGACY BLOCK OK", detect(model)["keras_label"], detect(model)["backend"])
"""
    script = tmp_path / "legacy_block.py"
    script.write_text(blocks[0] + checks)
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stdout[-3000:]
    import keras
    label = "keras {} (standalone)".format(keras.__version__)
    assert "LEGACY BLOCK OK {} keras2".format(label) in out.stdout
    assert sorted(os.listdir(str(tmp_path))) == ["legacy.h5", "legacy_block.py",
                                                 "legacy_lookahead_state"]


@eager_or_tf1
def test_docstring_examples_run():
    harness.skip_without_tensorflow("the docstrings' examples build tf.keras models")
    found, failed = docstring_examples([lookahead_inject.lookahead, lookahead_inject.loading],
                                       optionflags=doctest.ELLIPSIS)
    assert found >= 4
    assert failed == 0


def test_readme_table_lists_the_dispatch_table():
    rows = re.findall(r"^\| `(\w+)` \|", section(README, "Supported versions"), re.M)
    assert tuple(rows) == dispatch.BACKEND_NAMES


def shell_lines(blocks=None):
    """Each command of the bash blocks of README and its docs pages (``a && b`` is two),
    without comments."""
    for block in readme_blocks("bash") if blocks is None else blocks:
        for line in block.splitlines():
            for command in line.split("#")[0].split("&&"):
                if command.strip():
                    yield command.strip()


def section_blocks(heading, language="bash", path=README):
    """The ``language`` blocks of the section ``## heading`` of README (or of the page at
    ``path``); with ``heading`` None, of the whole page."""
    text = read(path) if heading is None else section(path, heading)
    return re.findall(r"```{}\n(.*?)```".format(language), text, re.S)


def pip_install_arguments(words):
    """What follows ``pip install`` / ``python -m pip install`` in a command, or None."""
    if words[:2] == ["pip", "install"]:
        return words[2:]
    if words[1:4] == ["-m", "pip", "install"]:
        return words[4:]
    return None


def tox_envs_by_hand():
    """The envs outside envlist that tox.ini's comments name: "... by hand ...: tox -e a,b"."""
    with open(os.path.join(ROOT, "tox.ini")) as handle:
        found = re.findall(r"#.*[Bb]y hand.*\n?.*tox -e ([\w-]+(?:,[\w-]+)*)", handle.read())
    return [env for line in found for env in line.split(",")]


def test_readme_install_and_tox_lines_name_real_things():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    tox = configparser.ConfigParser()
    tox.read(os.path.join(ROOT, "tox.ini"))
    envs = tox["tox"]["envlist"].split() + tox["tox"]["labels"].split("=", 1)[1].replace(
        ",", " ").split()
    checked = 0
    for command in shell_lines():
        words = shlex.split(command)
        if pip_install_arguments(words) is not None:
            for word in words:
                extra = re.match(r"\.\[(\w+)\]$", word)
                if extra:
                    assert '"{}":'.format(extra.group(1)) in setup, command
                if word == "-r":
                    path = words[words.index("-r") + 1]
                    assert os.path.exists(os.path.join(ROOT, path)), command
            checked += 1
        elif words[0] in ("tox", ".ci/run"):
            assert os.access(os.path.join(ROOT, ".ci", "run"), os.X_OK)
            if "-e" in words:
                named = words[words.index("-e") + 1].split(",")
                assert all(env in envs + tox_envs_by_hand() for env in named), command
            checked += 1
        elif words[0] == "pytest":
            assert os.path.isdir(os.path.join(ROOT, words[1])), command
            checked += 1
    assert checked >= 8


once_in_tf215_eager = pytest.mark.skipif(
    not (harness.tf_is(2, 15) and not harness.GRAPH),
    reason="the commands of README and its docs pages run once, in the TF 2.15 env's eager pass "
           "(it has the demo extra installed)")


@once_in_tf215_eager
def test_readme_pip_install_lines_resolve(tmp_path):
    # As written, from a copy of the clone, with pip's resolver against the package index;
    # --dry-run so the test env keeps its pins.
    for name in ("setup.py", "README.md", "lookahead_inject", ".ci"):
        copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy
        copy(os.path.join(ROOT, name), str(tmp_path / name))
    resolved = 0
    for command in shell_lines():
        arguments = pip_install_arguments(shlex.split(command))
        if arguments is None:
            continue
        out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                              "--disable-pip-version-check"] + arguments,
                             cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=600)
        assert out.returncode == 0 and "Would install" in out.stdout, command + "\n" + out.stdout[-2000:]
        resolved += 1
    assert resolved >= 4


@once_in_tf215_eager
def test_readme_lookahead_inject_commands_run_as_written(tmp_path):
    ran = 0
    for command in shell_lines():
        words = shlex.split(command)
        if words[:3] == ["python", "-m", "lookahead_inject"]:
            out = subprocess.run([sys.executable] + words[1:], cwd=str(tmp_path),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 universal_newlines=True, timeout=600)
            assert out.returncode == 0, command + "\n" + out.stdout[-2000:]
            ran += 1
    assert ran >= 3
    assert (tmp_path / "demo.png").exists()


fresh_venv = pytest.mark.skipif(
    not os.environ.get("README_FRESH_VENV"),
    reason="runs in the py313-tf221-keras3 tox env only (the newest Python of the matrix; "
           "README_FRESH_VENV=1 runs it elsewhere): a fresh venv that installs TensorFlow (pip's "
           "cache, if any, saves the download), then the demo and pytest: 9 min on a loaded "
           "2-core VM")

# What the test appends to README's commands to keep them short: the demo trains one
# epoch at one learning rate; pytest collects the whole suite (an import error anywhere
# fails it) and runs one test.
SHORTER = {"demo": ["--epochs", "1", "--seeds", "1", "--lrs", "0.1"],
           "pytest": ["-q", "-p", "no:cacheprovider", "-k", "test_info_names_versions"]}


def clone_copy(destination):
    """The files of a fresh clone: the checkout without tox's, git's and pip's leftovers."""
    shutil.copytree(ROOT, str(destination), ignore=shutil.ignore_patterns(
        ".git", ".tox", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))


@fresh_venv
def test_readme_first_commands_work_as_written_in_a_fresh_venv(tmp_path):
    # README's "See it work" and the quick command of "Running the tests" (docs/testing.md),
    # in a clone, in a new venv of this (the newest) Python: what a newcomer types first.
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    clone_copy(clone)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {key: value for key, value in os.environ.items()
           if key not in ("README_FRESH_VENV", "PYTHONPATH", "PYTHONHOME", "TF_USE_LEGACY_KERAS")}
    env.update(VIRTUAL_ENV=str(venv), PATH=str(venv / "bin") + os.pathsep + env["PATH"])
    commands = list(shell_lines(section_blocks("See it work"))) + \
        list(shell_lines(section_blocks(None, path=page("testing"))[:1]))
    assert commands[0].startswith('pip install ".[demo]" tensorflow'), commands
    assert any(c.startswith("pytest tests") for c in commands), commands
    for command in commands:
        words = shlex.split(command)
        words += SHORTER.get("demo" if words[:3] == ["python", "-m", "lookahead_inject"]
                             else words[0], [])
        out = subprocess.run(" ".join(shlex.quote(w) for w in words), shell=True,
                             cwd=str(clone), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=1800)
        assert out.returncode == 0, command + "\n" + out.stdout[-3000:]
    assert (clone / "demo.png").exists()


def _package_sources():
    package = os.path.join(ROOT, "lookahead_inject")
    for folder, _, files in os.walk(package):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as handle:
                    yield path, ast.parse(handle.read())


def _message_text(node):
    """The literal text of an error message: "..." or "...".format(...) or "a" + "b"."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        node = node.func.value
    if isinstance(node, ast.BinOp):
        return " ".join(filter(None, (_message_text(node.left), _message_text(node.right))))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if type(node).__name__ == "Str":        # Python 3.7: string literals are ast.Str
        return node.s
    return ""


def _normalized(text):
    return " ".join(text.split())


def refusal_section():
    """docs/refusals.md, "What is refused and why", from its title on."""
    text = read(page("refusals"))
    return _normalized(text.split("# What is refused and why\n", 1)[1])


def test_refusal_list_names_every_refusal_the_code_raises():
    import lookahead_inject.demo
    section = refusal_section()
    classes = [c for c in vars(lookahead_inject.errors).values()
               if isinstance(c, type) and issubclass(c, lookahead_inject.LookaheadError)]
    classes.append(lookahead_inject.demo.DemoDependencyError)
    for cls in classes:
        if cls is not lookahead_inject.LookaheadError:
            assert "`{}`".format(cls.__name__) in section, cls.__name__
    names = set(c.__name__ for c in classes)
    sites = 0
    for path, tree in _package_sources():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and getattr(node.exc.func, "id", None) in names and node.exc.args):
                # The longest literal stretch of the message, as a reader sees it.
                pieces = re.split(r"\{[^}]*\}", _message_text(node.exc.args[0]))
                fragment = _normalized(max(pieces, key=len)).lstrip(").:;, ")[:30]
                if not fragment:        # a message a helper function builds
                    continue
                sites += 1
                assert fragment in section, "{}:{} {!r}".format(path, node.lineno, fragment)
    assert sites >= 20


def test_refusal_list_quotes_only_messages_the_code_has():
    literals = [_normalized(_message_text(node)) for _, tree in _package_sources()
                for node in ast.walk(tree)
                if isinstance(node, (ast.Constant, ast.BinOp)) or type(node).__name__ == "Str"]
    quotes = re.findall(r'"([^"]+)"', refusal_section())
    assert len(quotes) >= 20
    for quote in quotes:
        assert any(quote in literal for literal in literals), quote
