"""The docs run: README's python blocks and the public docstrings' examples."""

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
import lookahead_inject.lookahead
from lookahead_inject import dispatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

# The examples use TF 2's default (eager) optimizers; TF >= 2.11 graph mode would need
# tf.keras.optimizers.legacy, which the graph-mode suite covers.
eager_or_tf1 = pytest.mark.skipif(
    harness.GRAPH and harness.ENVIRONMENT.tf_version.major >= 2,
    reason="TF 2.x graph mode: the docs show TF 2's default eager mode (TF >= 2.11 graph "
           "mode needs legacy optimizers)")


LEGACY = "# legacy:"


def readme_blocks(language, legacy=False):
    """README's ``language`` blocks; the python ones for standalone Keras (first line
    "# legacy: ...") only with ``legacy``, all others only without."""
    with open(README) as handle:
        blocks = re.findall(r"```{}\n(.*?)```".format(language), handle.read(), re.S)
    return [b for b in blocks if b.startswith(LEGACY) == legacy]


@pytest.mark.skipif(harness.GRAPH, reason="graph mode (TF 1.x; TF 2.x with eager disabled): the "
                    "README shows eager TF 2, and its MirroredStrategy block is refused in graph mode")
def test_readme_python_blocks_run(tmp_path):
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


@pytest.mark.skipif(not harness.STANDALONE, reason="{}: README's legacy block imports standalone "
                    "keras 2.2 / 2.3, installed in the -keras2xx tox envs".format(
                        harness.ENVIRONMENT.describe()))
def test_readme_legacy_block_runs(tmp_path):
    blocks = readme_blocks("python", legacy=True)
    assert len(blocks) == 1
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
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(lookahead_inject.lookahead) if t.examples]
    assert len(tests) >= 2
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_readme_table_lists_the_dispatch_table():
    rows = re.findall(r"^\| `(\w+)` \|", open(README).read(), re.M)
    assert tuple(rows) == dispatch.BACKEND_NAMES


def shell_lines():
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if command:
                yield command


def pip_install_arguments(words):
    """What follows ``pip install`` / ``python -m pip install`` in a command, or None."""
    if words[:2] == ["pip", "install"]:
        return words[2:]
    if words[1:4] == ["-m", "pip", "install"]:
        return words[4:]
    return None


def test_readme_install_and_tox_lines_name_real_things():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    tox = configparser.ConfigParser()
    tox.read(os.path.join(ROOT, "tox.ini"))
    envs = tox["tox"]["envlist"].split()
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
        elif words[0] == "tox":
            assert all(env in envs for env in words[words.index("-e") + 1:]) if "-e" in words \
                else words == ["tox"], command
            checked += 1
        elif words[0] == "pytest":
            assert os.path.isdir(os.path.join(ROOT, words[1])), command
            checked += 1
    assert checked >= 5


once_in_tf215_eager = pytest.mark.skipif(
    not (harness.ENVIRONMENT.tf_version.release[:2] == (2, 15) and not harness.GRAPH),
    reason="README's own commands run once, in the TF 2.15 env's eager pass "
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
    assert (tmp_path / "docs" / "demo.png").exists()
