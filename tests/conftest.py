"""pytest setup: ``--tf-mode graph`` disables eager execution before any test runs.

Graph vs eager is process-wide in TF 2, so a TF 2 env runs the suite twice, once
per mode, in separate processes (see tox.ini).
"""

import pytest

from harness import configure_mode


def pytest_addoption(parser):
    parser.addoption("--tf-mode", choices=("default", "graph", "eager"), default="default",
                     help="graph: tf.compat.v1.disable_eager_execution() first (TF 2); "
                          "default: whatever the installed TF does.")


def pytest_configure(config):
    configure_mode(config.getoption("--tf-mode"))


def pytest_report_header(config):
    import harness
    return "lookahead_inject tests: {}".format(harness.ENVIRONMENT.describe())


def pytest_generate_tests(metafunc):
    # A test that takes `execution` runs once per way this TF/mode runs a step.
    import harness
    if "execution" in metafunc.fixturenames:
        metafunc.parametrize("execution", harness.EXECUTIONS)


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Each test builds its models in a fresh graph / Keras session."""
    import tensorflow as tf
    tf.keras.backend.clear_session()
    yield
