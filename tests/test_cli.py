"""The command line: info, demo, selftest."""

import os
import subprocess
import sys

import pytest

import harness
from lookahead_inject import __main__ as cli
from lookahead_inject import selftest

try:
    import sklearn  # noqa: F401
    import matplotlib  # noqa: F401
    HAVE_DEMO_EXTRA = True
except ImportError:
    HAVE_DEMO_EXTRA = False

needs_demo_extra = pytest.mark.skipif(
    not HAVE_DEMO_EXTRA, reason="scikit-learn / matplotlib are installed only in the TF 2.15 "
                                "and TF 2.21 Keras 3 tox envs (Python 3.11)")
# The selftest starts its own graph and eager processes: once per env is enough.
once_per_env = pytest.mark.skipif(
    harness.GRAPH and harness.ENVIRONMENT.tf_version.major >= 2,
    reason="TF 2.x: selftest checks both modes itself, in the eager pass of the env")


def run_cli(*argv):
    lines = []
    args = cli.parser().parse_args(list(argv))
    code = {"info": cli.info, "demo": cli.demo, "selftest": cli.selftest}[args.command](
        args, echo=lines.append)
    return code, "\n".join(lines)


def test_info_names_versions_mode_backend_and_formats():
    code, out = run_cli("info")
    assert code == 0
    environment = harness.ENVIRONMENT
    assert str(environment.tf_version) in out and environment.mode in out
    backend = [l for l in out.splitlines() if l.startswith("backend")][0]
    assert "row '{}' of the dispatch table".format(backend.split()[1]) in backend
    assert "la.save(path)" in out and "tf.distribute" in out


@needs_demo_extra
def test_demo_prints_the_table_and_writes_the_plot(tmp_path):
    plot = str(tmp_path / "demo.png")
    code, out = run_cli("demo", "--epochs", "2", "--seeds", "2", "--lrs", "0.1", "1.0",
                        "--plot", plot)
    assert code == 0
    rows = [l for l in out.splitlines() if l.strip().startswith(("0.1 |", "1.0 |"))]
    assert len(rows) == 2 and all(l.count("±") == 4 for l in rows)
    with open(plot, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(plot) > 20000


@pytest.mark.skipif(HAVE_DEMO_EXTRA, reason="scikit-learn is installed here (TF 2.15 / 2.21 envs)")
def test_demo_without_scikit_learn_says_how_to_install_it():
    code, out = run_cli("demo", "--epochs", "1")
    assert code == 1 and 'pip install "lookahead_inject[demo]"' in out


@once_per_env
def test_selftest_passes_in_every_mode_of_this_tf():
    out = subprocess.run([sys.executable, "-m", "lookahead_inject", "selftest"],
                         stdout=subprocess.PIPE, universal_newlines=True, timeout=300)
    modes = [l.split()[0] for l in out.stdout.splitlines() if l.strip()]
    want = ["graph"] if harness.ENVIRONMENT.tf_version.major < 2 else \
        (["eager"] if harness.KERAS_3 else ["eager", "graph"])
    assert out.returncode == 0, out.stdout
    assert modes == want and all(" ok " in l for l in out.stdout.splitlines() if l.strip())


def test_selftest_check_fails_against_a_wrong_reference():
    assert selftest.check_this_process()["ok"]
    wrong = selftest.check_this_process(reference_alpha=0.4)
    assert not wrong["ok"] and wrong["max_error"] > 1e-3
