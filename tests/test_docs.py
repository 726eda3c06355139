"""The docs run: README's python blocks and the public docstrings' examples."""

import doctest
import os
import re

import pytest

import harness
import lookahead_inject.lookahead
from lookahead_inject import dispatch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

# The examples use TF 2's default (eager) optimizers; TF >= 2.11 graph mode would need
# tf.keras.optimizers.legacy, which the graph-mode suite covers.
eager_or_tf1 = pytest.mark.skipif(
    harness.GRAPH and harness.ENVIRONMENT.tf_version.major >= 2,
    reason="TF 2.x graph mode: the docs show TF 2's default eager mode (TF >= 2.11 graph "
           "mode needs legacy optimizers)")


def readme_blocks(language):
    with open(README) as handle:
        return re.findall(r"```{}\n(.*?)```".format(language), handle.read(), re.S)


@eager_or_tf1
def test_readme_python_blocks_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))                  # the blocks save files
    blocks = readme_blocks("python")
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, README, "exec"), namespace)
    # two epochs of 8 batches, one train_on_batch, then one more epoch
    assert namespace["la"].step == 2 * 8 + 1 + 8
    assert namespace["resumed_la"].step == 2 * 8 + 1
    assert "backend" in capsys.readouterr().out


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
