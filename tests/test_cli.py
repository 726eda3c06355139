"""The command line: info, demo, selftest."""

import os
import subprocess
import sys

import pytest

import harness
import lookahead_inject.lookahead
from lookahead_inject import __main__ as cli
from lookahead_inject import dispatch, environment, selftest
from lookahead_inject.errors import UnsupportedEnvironmentError
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import sklearn  # noqa: F401
    import matplotlib  # noqa: F401
    HAVE_DEMO_EXTRA = True
except ImportError:
    HAVE_DEMO_EXTRA = False

needs_demo_extra = pytest.mark.skipif(
    not HAVE_DEMO_EXTRA, reason="scikit-learn / matplotlib are installed only in the TF 2.15, "
                                "the TF 2.21 Keras 3 and the Keras 3 JAX / PyTorch tox envs")
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
    assert environment.mode in out
    backend = [l for l in out.splitlines() if l.startswith("backend")][0]
    assert "row '{}' of the dispatch table".format(backend.split()[1]) in backend
    assert "la.save(path)" in out
    if environment.tf_version is None:
        assert "tensorflow     not used (Keras 3 runs on {})".format(
            environment.keras_backend) in out
        assert "tf.distribute" not in out and "install" not in out.lower()
    else:
        assert str(environment.tf_version) in out and "tf.distribute" in out


@needs_demo_extra
def test_demo_prints_the_table_and_writes_the_plot(tmp_path):
    plot = str(tmp_path / "demo.png")
    code, out = run_cli("demo", "--epochs", "2", "--seeds", "2", "--lrs", "0.1", "1.0",
                        "--plot", plot)
    assert code == 0
    rows = [l for l in out.splitlines() if l.strip().startswith(("0.1 |", "1.0 |"))]
    assert len(rows) == 2 and all(l.count("±") == 4 for l in rows)
    if harness.KERAS3_WITHOUT_TF:
        assert "{}, no TensorFlow".format(lookahead_inject.detect()["keras_label"]) in out
    with open(plot, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(plot) > 20000


@pytest.mark.skipif(HAVE_DEMO_EXTRA, reason="scikit-learn is installed here (the demo extra's "
                                             "tox envs)")
def test_demo_without_scikit_learn_says_how_to_install_it():
    code, out = run_cli("demo", "--epochs", "1")
    # the form that works from a clone; "lookahead_inject" is on no package index
    assert code == 1 and 'pip install ".[demo]"' in out and "lookahead_inject[" not in out


@once_per_env
def test_selftest_passes_in_every_mode_of_this_tf():
    out = subprocess.run([sys.executable, "-m", "lookahead_inject", "selftest"],
                         stdout=subprocess.PIPE, universal_newlines=True, timeout=300)
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    want = ["graph"] if harness.tf_older_than(2) else \
        (["eager"] if harness.KERAS_3 else ["eager", "graph"])
    assert out.returncode == 0, out.stdout
    assert sorted(l.split()[0] for l in lines if " ok " in l) == sorted(want), out.stdout
    # TF 1.x eager and Keras 3 graph have no backend: said so, not counted as a failure
    assert all(" ok " in l or " not available: " in l for l in lines), out.stdout
    assert len(lines) == 2


def hidden_modules_path(tmp_path, *names):
    """A PYTHONPATH entry on which ``import name`` fails as if it were not installed."""
    for name in names:
        package = tmp_path / "hide" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named '{0}'\", name='{0}')\n".format(name))
    return str(tmp_path / "hide")


@pytest.mark.parametrize("command", ["info", "demo", "selftest"])
def test_every_command_without_tensorflow_explains_the_fix(tmp_path, command):
    # As in a Python with only what `pip install .` brings: no TensorFlow, no numpy, no
    # Keras (Keras 3 on JAX / PyTorch would need no TensorFlow), also for selftest's
    # child processes.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [hidden_modules_path(tmp_path, "tensorflow", "numpy", "keras"), ROOT]))
    out = subprocess.run([sys.executable, "-m", "lookahead_inject", command], cwd=str(tmp_path),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=300)
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stdout, out.stdout
    assert "TensorFlow is not installed" in out.stdout and "pip install tensorflow" in out.stdout
    python = "{}.{}".format(*sys.version_info[:2])
    assert "have wheels for Python {}".format(python) in out.stdout, out.stdout
    assert out.stdout.count(dispatch.supported_summary()) == 1


def keras3_on(keras_backend, mode=environment.EAGER):
    if keras_backend == "tensorflow":
        return environment.Environment(Version("2.21.0"), environment.KERAS_3, "3.15.1", mode,
                                       keras_backend)
    # Keras 3 elsewhere: TensorFlow plays no part (detect_environment gives no version).
    return environment.Environment(None, environment.KERAS_3_OTHER_BACKEND.format(keras_backend),
                                   "3.15.1", mode, keras_backend)


@pytest.mark.parametrize("command", ["info", "demo", "selftest"])
def test_every_command_without_a_backend_explains_the_fix_with_the_table_once(monkeypatch,
                                                                              command):
    numpy = keras3_on("numpy")          # Keras 3's numpy backend cannot train
    monkeypatch.setattr(environment, "detect_environment", lambda model=None: numpy)
    monkeypatch.setattr(lookahead_inject.lookahead, "detect_environment", lambda model=None: numpy)
    monkeypatch.setattr(selftest, "_describe_in_a_child", lambda: numpy)
    code, out = run_cli(command)
    assert code == 1
    assert "KERAS_BACKEND to tensorflow, jax or torch" in out
    assert "install tensorflow" not in out.lower()
    assert out.count(dispatch.supported_summary()) == 1, out


def test_selftest_calls_a_mode_without_backend_not_available_not_failed(monkeypatch):
    monkeypatch.setattr(selftest, "_describe_in_a_child", lambda: keras3_on("tensorflow"))
    assert [(mode, bool(why)) for mode, why in selftest.modes()] == \
        [("eager", False), ("graph", True)]
    assert "not available" in dict(selftest.modes())["graph"]


def test_demo_help_documents_every_option():
    demo_parser = cli.parser()._subparsers._group_actions[0].choices["demo"]
    options = [a for a in demo_parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 7
    assert all(a.help and len(a.help) > 10 for a in options), [a.dest for a in options]
    assert all("default" in a.help for a in options if a.default not in (None, False))


def test_no_tensorflow_message_gives_this_pythons_tensorflow_from_the_one_table():
    for python, newest in (("3.7.16", "2.11"), ("3.11.7", "2.21"), ("3.13.0", "2.21")):
        first, last = environment.tf_for_python(python)
        assert last == newest
        message = environment.no_tensorflow_message(python, "x")
        assert "TF {} - {} have wheels for Python {}".format(first, last, python[:4].rstrip(".")) \
            in message and environment.tf_pythons_text() in message
    assert "No TensorFlow release has wheels for Python 3.14" in \
        environment.no_tensorflow_message("3.14.0", "x")


def test_selftest_check_fails_against_a_wrong_reference():
    assert selftest.check_this_process()["ok"]
    wrong = selftest.check_this_process(reference_alpha=0.4)
    assert not wrong["ok"] and wrong["max_error"] > 1e-3
