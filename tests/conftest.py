"""pytest setup: ``--tf-mode graph`` disables eager execution before any test runs.

Graph vs eager is process-wide in TF 2, so a TF 2 env runs the suite twice, once
per mode, in separate processes (see tox.ini).
"""

import pytest

from harness import configure_mode


def pytest_addoption(parser):
    parser.addoption("--tf-mode", choices=("default", "graph", "eager"), default="default",
                     help="graph: tf.compat.v1.disable_eager_execution() first (TF 2); "
                          "default: whatever the installed TF does (Keras 3 on JAX / "
                          "PyTorch: eager, its only mode).")


def pytest_configure(config):
    configure_mode(config.getoption("--tf-mode"))


def pytest_report_header(config):
    import harness
    return "lookahead_inject tests: {}".format(harness.ENVIRONMENT.describe())


def pytest_generate_tests(metafunc):
    # A test that takes `execution` runs once per way this TF/mode runs a step.
    import harness
    if "execution" in metafunc.fixturenames:
        executions = harness.EXECUTIONS
        if (harness.KERAS_BACKEND == "torch"
                and metafunc.module.__name__ not in harness.TORCH_COMPILE_MODULES):
            executions = tuple(e for e in executions if e != "jit")
        metafunc.parametrize("execution", executions)


@pytest.fixture(scope="session", autouse=True)
def record_environment(record_testsuite_property):
    """What inject saw, in the JUnit XML: tools/compat_matrix.py reads it."""
    import harness
    import lookahead_inject
    environment = harness.ENVIRONMENT
    # "" when Keras 3 runs on JAX / PyTorch: TensorFlow plays no part there.
    record_testsuite_property("tensorflow", str(environment.tf_version or ""))
    record_testsuite_property("keras", environment.keras)
    record_testsuite_property("keras_version", str(environment.keras_version))
    record_testsuite_property("mode", environment.mode)
    record_testsuite_property("keras_backend", environment.keras_backend or "")
    try:
        backend = lookahead_inject.detect(harness.probe_model() if harness.STANDALONE
                                          else None)["backend"]
    except Exception as error:     # the tests that inject fail and say why; the rest run
        backend = "none ({}: {})".format(type(error).__name__, error)
    record_testsuite_property("backend", backend)


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Each test builds its models in a fresh graph / Keras session."""
    import harness
    harness.fresh_session()
    yield
