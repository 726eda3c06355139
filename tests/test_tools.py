"""tools/compat_matrix.py turns tox results into the matrix, on the Python that runs tox;
tox.ini's envs and .ci/run; the one table of which TF installs on which Python."""

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from lookahead_inject import environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# .ci/run runs the tool with the tox runner's Python: packaging, no numpy, no TensorFlow.
BARE_PYTHON = ("import runpy, sys; sys.modules['numpy'] = None; sys.modules['tensorflow'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")

SUITE = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" skipped="1">
<properties>
 <property name="tensorflow" value="{tf}"/><property name="keras" value="{keras}"/>
 <property name="keras_version" value="{keras_version}"/><property name="mode" value="{mode}"/>
 <property name="backend" value="{backend}"/>{keras_backend}
</properties>
<testcase classname="tests.test_distribute" name="test_mirrored_equals_one_device[fit]"/>
<testcase classname="tests.test_distribute" name="test_two_workers_equal_one_device">{failure}</testcase>
<testcase classname="tests.test_trajectory" name="test_other"><skipped message="x"/></testcase>
</testsuite></testsuites>
"""


def write_env(results, env, tf, mode_runs, date="2026-11-26 10:00 UTC", commit="abc1234",
              keras="tf.keras (bundled with TF)", keras_version=None, keras_backend=None):
    packages = {"tensorflow": tf, "numpy": "1.2"} if tf else {"keras": keras_version,
                                                              "numpy": "1.2"}
    with open(os.path.join(results, env + ".json"), "w") as out:
        json.dump({"env": env, "python": "3.x", "packages": packages, "date": date,
                   "commit": commit}, out)
    for mode, backend, failed in mode_runs:
        with open(os.path.join(results, "{}--{}.xml".format(env, mode)), "w") as out:
            out.write(SUITE.format(
                tests=3, failures=int(failed), tf=tf or "", keras=keras,
                keras_version=keras_version or tf, mode=mode, backend=backend,
                failure='<failure message="boom"/>' if failed else "",
                keras_backend="" if keras_backend is None else
                '<property name="keras_backend" value="{}"/>'.format(keras_backend)))


def run_tool(tmp_path, *args):
    run = subprocess.run(
        [sys.executable, "-c", BARE_PYTHON, os.path.join(ROOT, "tools", "compat_matrix.py"),
         "--results", str(tmp_path / "results"), "--matrix", str(tmp_path / "matrix.json"),
         "--output", str(tmp_path / "matrix.md")] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert run.returncode == 0, run.stdout
    text = (tmp_path / "matrix.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| py")}
    return rows, text


def test_compat_matrix_reports_each_mode_from_tox_results_without_numpy_or_tensorflow(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py37-tf115", "1.15.5", [("graph", "tf115", False)])
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", True)])
    rows, _ = run_tool(tmp_path)
    # columns: Python, TensorFlow, Keras, Keras backend, numpy, graph, eager, tf.distribute, run
    tf115, tf23 = rows["py37-tf115"], rows["py37-tf23"]
    assert tf115[5] == "passed (2, 1 skipped) — `tf115`"
    assert tf115[6] == "not supported"                 # TF 1.x eager has no backend
    assert tf115[7] == "MirroredStrategy passed (1/1); MultiWorkerMirrored passed (1/1)"
    assert tf115[8] == "2026-11-26 10:00 UTC, `abc1234`"
    assert tf23[5].startswith("**not run**")           # TF 2.3 graph has a backend
    assert tf23[6] == "**failed** (1 failed, 1 passed) — `tf2_eager`[^py37-tf23-eager]"
    assert "MultiWorkerMirrored **failed** (0/1)" in tf23[7]


def test_compat_matrix_has_a_keras_backend_column_and_envs_without_tensorflow(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py311-keras3-jax", None, [("eager", "keras3_jax", False)],
              keras=environment.KERAS_3_JAX, keras_version="3.15.1", keras_backend="jax")
    write_env(str(results), "py311-tf221-keras3", "2.21.0", [("eager", "keras3", False)],
              keras=environment.KERAS_3, keras_version="3.15.1", keras_backend="tensorflow")
    write_env(str(results), "py37-tf115", "1.15.5", [("graph", "tf115", False)])
    rows, text = run_tool(tmp_path)
    assert "| Keras that builds the model | Keras backend | numpy |" in text
    jax = rows["py311-keras3-jax"]
    assert jax[1:5] == ["–", "keras 3.15.1 (jax backend)", "jax", "1.2"]
    assert jax[5] == "not supported"                    # Keras 3 has no graph mode
    assert jax[6] == "passed (2, 1 skipped) — `keras3_jax`"
    assert rows["py311-tf221-keras3"][3] == "tensorflow"
    assert rows["py37-tf115"][3] == ""                  # Keras 2: no Keras backend


def test_a_failed_cell_names_the_failed_test_in_a_footnote(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", True)])
    _, text = run_tool(tmp_path)
    assert ("[^py37-tf23-eager]: py37-tf23 eager mode: "
            "`tests/test_distribute.py::test_two_workers_equal_one_device`: boom") in text


def test_a_ci_run_is_merged_into_the_last_full_sweep_each_row_with_its_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py37-tf115", "1.15.5", [("graph", "tf115", False)],
              date="2026-11-20 08:00 UTC", commit="0ld5eep")
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", False)],
              date="2026-11-20 08:00 UTC", commit="0ld5eep")
    run_tool(tmp_path, "--full")
    shutil.rmtree(str(results))                       # a later CI run of one env only
    results.mkdir()
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", True)],
              date="2026-11-26 10:00 UTC", commit="new1234")
    rows, text = run_tool(tmp_path)
    assert "Last full sweep: 2026-11-20 08:00 UTC at commit 0ld5eep" in text
    assert rows["py37-tf115"][8] == "2026-11-20 08:00 UTC, `0ld5eep`"     # kept, visibly older
    assert rows["py37-tf115"][5].startswith("passed")
    assert rows["py37-tf23"][8] == "2026-11-26 10:00 UTC, `new1234`"
    assert rows["py37-tf23"][6].startswith("**failed**")
    # every env of the full sweep has a row, also one that never ran
    tox = configparser.ConfigParser()
    tox.read(os.path.join(ROOT, "tox.ini"))
    full = tox["tox"]["labels"].split("=", 1)[1].replace(",", " ").split()
    assert set(full) <= set(rows)
    assert rows["py310-tf28"][5] == "not run yet"


def test_an_older_result_never_replaces_a_newer_row(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", False)],
              date="2026-11-26 10:00 UTC", commit="new1234")
    run_tool(tmp_path)
    write_env(str(results), "py37-tf23", "2.3.4", [("eager", "tf2_eager", True)],
              date="2026-11-01 10:00 UTC", commit="0ld5eep")
    rows, _ = run_tool(tmp_path)
    assert rows["py37-tf23"][8] == "2026-11-26 10:00 UTC, `new1234`"


def test_an_env_whose_install_failed_says_so_with_pips_error(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    tox_json = tmp_path / "tox-run.json"
    tox_json.write_text(json.dumps({"testenvs": {"py38-tf22": {
        "result": {"success": False, "exit_code": 1},
        "setup": [{"run_id": "install_deps", "retcode": 1, "output": "",
                   "err": "ERROR: No matching distribution found for tensorflow==2.2.3\n"}]}}}))
    rows, text = run_tool(tmp_path, "--tox-json", str(tox_json))
    assert rows["py38-tf22"][5] == "**install failed**[^py38-tf22-install]"
    assert "No matching distribution found for tensorflow==2.2.3" in text


def tox_ini():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(os.path.join(ROOT, "tox.ini"))
    return tox


def full_sweep():
    return tox_ini()["tox"]["labels"].split("=", 1)[1].replace(",", " ").split()


def env_versions(env):
    """py37-tf114 -> (3, 7), (1, 14); py313-tf221-keras3 -> (3, 13), (2, 21)."""
    python, tf = re.match(r"py3(\d+)-tf(\d+)", env).groups()
    return (3, int(python)), (int(tf[0]), int(tf[1:]))


def minor(text):
    return tuple(int(part) for part in text.split(".")[:2])


def test_full_sweep_has_every_tf_minor_on_a_python_with_its_wheels():
    envs, tfs = full_sweep(), set()
    pins = re.findall(r"^\s*([\w,-]+): tensorflow==(\d+)\.(\d+)\.", tox_ini()["testenv"]["deps"],
                      re.M)
    for env in envs:
        if not re.match(r"py3\d+-tf\d+", env):
            continue                        # Keras 3 on JAX / PyTorch: see the test below
        python, tf = env_versions(env)
        oldest, newest = environment.pythons_for_tf("{}.{}".format(*tf))
        assert minor(oldest) <= python <= minor(newest), env
        tfs.add(tf)
        # exactly one TensorFlow pin applies to the env, and it is of the env's own minor
        applying = [(int(major), int(minor_)) for condition, major, minor_ in pins
                    if any(set(factors.split("-")) <= set(env.split("-"))
                           for factors in condition.split(","))]
        assert applying == [tf], env
    assert tfs == {(1, 14), (1, 15)} | {(2, m) for m in range(0, 22)}
    for m in range(16, 22):
        for keras in ("keras3", "tfkeras"):
            assert any(e.endswith("tf2{}-{}".format(m, keras)) for e in envs), (m, keras)
    assert any(e.startswith("py312-") for e in envs) and any(e.startswith("py313-") for e in envs)
    assert set(tox_ini()["tox"]["envlist"].split()) <= set(envs)


def applies(condition, env):
    """Whether a tox factor condition ("a-b,c") selects ``env``."""
    return any(set(factors.split("-")) <= set(env.split("-"))
               for factors in condition.split(","))


def test_envs_without_tensorflow_pin_keras_3_and_its_backend_and_no_tensorflow():
    tox = tox_ini()["testenv"]
    deps = re.findall(r"^\s*([\w,-]+): ([\w-]+)==([\w.+]+)", tox["deps"], re.M)
    setenv = re.findall(r"^\s*([\w,-]+): KERAS_BACKEND = (\w+)", tox["setenv"], re.M)
    others = [env for env in full_sweep() if not re.match(r"py3\d+-tf\d+", env)]
    assert sorted(others) == ["py311-keras3-jax", "py311-keras3-torch"]
    for env in others:
        python, backend = re.match(r"py3(\d+)-keras3-(\w+)$", env).groups()
        assert "3.{}".format(python) in environment.PYTHONS, env
        pinned = {name: version for condition, name, version in deps if applies(condition, env)}
        assert "tensorflow" not in pinned and "tf-keras" not in pinned, env
        assert pinned["keras"] == "3.15.1", env
        assert {"jax": {"jax", "jaxlib"}, "torch": {"torch"}}[backend] <= set(pinned), env
        assert [value for condition, value in setenv if applies(condition, env)] == [backend]


def test_ci_subset_covers_every_backend_and_the_newest_python():
    envlist = tox_ini()["tox"]["envlist"].split()
    assert {"py37-tf114", "py37-tf115"} <= set(envlist)               # tf114, tf115
    assert {"py311-keras3-jax", "py311-keras3-torch"} <= set(envlist)  # keras3_jax / _torch
    assert any("keras3" in e for e in envlist)                          # keras3
    assert any(re.match(r"py3\d+-tf2\d+($|-tfkeras)", e) for e in envlist)  # tf2_graph / eager
    assert any(e.startswith("py313-") for e in envlist)


def test_tf_python_table_is_readmes_and_is_consistent():
    readme = open(os.path.join(ROOT, "README.md")).read()
    table = readme[readme.index("<!-- tf-pythons:start -->"):readme.index("<!-- tf-pythons:end -->")]
    rows = re.findall(r"^\| ([\d. –]+) \| ([\d. –]+) \|$", table, re.M)

    def span(first, last):
        return first if first == last else "{} – {}".format(first, last)
    assert rows == [(span(a, b), span(c, d)) for a, b, c, d in environment.TF_PYTHONS]
    previous = None
    for first, last, oldest, newest in environment.TF_PYTHONS:
        assert environment.pythons_for_tf(first) == environment.pythons_for_tf(last) == \
            (oldest, newest)
        assert oldest in environment.PYTHONS and newest in environment.PYTHONS
        if previous:                                  # no TF minor left out between rows
            major, minor = map(int, previous.split("."))
            assert (major, minor + 1) == tuple(map(int, first.split("."))) or \
                (previous, first) == ("1.15", "2.0") or first.endswith(".0")
        previous = last
    assert environment.tf_for_python("3.13") == ("2.20", "2.21")
    assert environment.tf_for_python("3.7") == ("1.14", "2.11")


# Two envs at a time unless LOOKAHEAD_CI_PARALLEL says otherwise (unset in this test).
RUN = ["run-parallel", "--parallel", "2", "--result-json", ".tox/results/tox-run.json"]
MATRIX = ["--matrix", "compat_matrix.json", "--output", "compat_matrix.md"]


@pytest.mark.parametrize("argv, tox_args, tool_args", [
    ([], RUN, MATRIX),
    (["--full"], RUN + ["-m", "full"], MATRIX + ["--full"]),
    (["-e", "py37-tf115"], RUN + ["-e", "py37-tf115"], MATRIX),
    # pytest arguments may select part of the suite: not merged into the committed matrix
    (["-e", "py37-tf115", "--", "-k", "cli"], RUN + ["-e", "py37-tf115", "--", "-k", "cli"],
     ["--matrix", ".tox/compat_matrix.json", "--output", ".tox/compat_matrix.md"]),
])
def test_ci_run_passes_its_arguments_to_tox_and_merges_the_matrix(tmp_path, argv, tox_args,
                                                                 tool_args):
    # A copy of the clone whose .ci/.venv holds a stand-in tox and python that log their
    # arguments: the script's own logic, without installing or running anything.
    for name in (".ci", "tools", "lookahead_inject", "tox.ini", "compat_matrix.json"):
        copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy
        copy(os.path.join(ROOT, name), str(tmp_path / name),
             **({"ignore": shutil.ignore_patterns(".venv")} if name == ".ci" else {}))
    bin_dir = tmp_path / ".ci" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("tox", "python"):
        script = bin_dir / tool
        script.write_text("#!/bin/sh\necho \"$@\" >> {}\n".format(tmp_path / (tool + ".log")))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    environ = dict(os.environ)
    environ.pop("LOOKAHEAD_CI_PARALLEL", None)
    out = subprocess.run(["bash", str(tmp_path / ".ci" / "run")] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
                         env=environ)
    assert out.returncode == 0, out.stdout
    assert (tmp_path / "tox.log").read_text().split() == tox_args
    assert (tmp_path / "python.log").read_text().split() == \
        ["tools/compat_matrix.py", "--tox-json", ".tox/results/tox-run.json"] + tool_args
