"""tools/compat_matrix.py turns tox results into the matrix, on the Python that runs tox."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# .ci/run runs the tool with the tox runner's Python: packaging, no numpy, no TensorFlow.
BARE_PYTHON = ("import runpy, sys; sys.modules['numpy'] = None; sys.modules['tensorflow'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")

SUITE = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" skipped="1">
<properties>
 <property name="tensorflow" value="{tf}"/><property name="keras" value="{keras}"/>
 <property name="keras_version" value="{tf}"/><property name="mode" value="{mode}"/>
 <property name="backend" value="{backend}"/>
</properties>
<testcase classname="tests.test_distribute" name="test_mirrored_equals_one_device[fit]"/>
<testcase classname="tests.test_distribute" name="test_two_workers_equal_one_device">{failure}</testcase>
<testcase classname="tests.test_trajectory" name="test_other"><skipped message="x"/></testcase>
</testsuite></testsuites>
"""


def write_env(results, env, tf, mode_runs):
    with open(os.path.join(results, env + ".json"), "w") as out:
        json.dump({"env": env, "python": "3.x", "packages": {"tensorflow": tf, "numpy": "1.2"}}, out)
    for mode, backend, failed in mode_runs:
        with open(os.path.join(results, "{}--{}.xml".format(env, mode)), "w") as out:
            out.write(SUITE.format(
                tests=3, failures=int(failed), tf=tf, keras="tf.keras (bundled with TF)",
                mode=mode, backend=backend, failure='<failure message="boom"/>' if failed else ""))


def test_compat_matrix_reports_each_mode_from_tox_results_without_numpy_or_tensorflow(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py37-tf115", "1.15.5", [("graph", "tf115", False)])
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", True)])
    output = tmp_path / "matrix.md"
    run = subprocess.run(
        [sys.executable, "-c", BARE_PYTHON, os.path.join(ROOT, "tools", "compat_matrix.py"),
         "--results", str(results), "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert run.returncode == 0, run.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in output.read_text().splitlines() if line.startswith("| py")}
    # columns: Python, TensorFlow, Keras, numpy, graph, eager, tf.distribute
    tf115, tf23 = rows["py37-tf115"], rows["py37-tf23"]
    assert tf115[4] == "passed (2, 1 skipped) — `tf115`"
    assert tf115[5] == "not supported"                 # TF 1.x eager has no backend
    assert tf115[6] == "MirroredStrategy passed (1/1); MultiWorkerMirrored passed (1/1)"
    assert tf23[4].startswith("**not run**")           # TF 2.3 graph has a backend
    assert tf23[5] == "**failed** (1 failed, 1 passed) — `tf2_eager`"
    assert "MultiWorkerMirrored **failed** (0/1)" in tf23[6]
