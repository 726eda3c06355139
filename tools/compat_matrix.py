"""Merge the results of a tox run into compat_matrix.json / compat_matrix.md (never edit by hand).

    .ci/run                              # CI subset: tox, then this tool
    .ci/run --full                       # every env (tox -m full), then this tool with --full
    python tools/compat_matrix.py [--tox-json .tox/results/tox-run.json] [--full]

Each tox env records the versions it installed, the date and the commit
(tools/record_versions.py) and, per pytest run, the TF / Keras / mode / backend that
lookahead_inject detected (JUnit testsuite properties, see tests/conftest.py). A row
of compat_matrix.json is replaced only by a newer run of the same env, so a CI run
(a subset of the envs) is merged into the last full sweep: every row keeps the date
and commit of the run that produced it. A mode an env did not run is "not supported"
when the dispatch table has no backend for it. A failed cell names the failed tests
in a footnote; an env whose install failed says so, with pip's error.
"""

import argparse
import configparser
import datetime
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from packaging.version import Version  # noqa: E402

from lookahead_inject import dispatch, environment  # noqa: E402
from lookahead_inject.errors import LookaheadError  # noqa: E402
from record_versions import commit  # noqa: E402

MODES = (environment.GRAPH, environment.EAGER)
DISTRIBUTED = (("MirroredStrategy", "test_mirrored_"), ("MultiWorkerMirrored", "test_two_workers"),
               ("refused", "test_graph_mode_refuses"))
MAX_FAILED_NAMED = 6
#: The TensorFlow cell of an env without it (Keras 3 on JAX / PyTorch).
NO_TENSORFLOW = "–"
NOT_RUN = "**not run** (the tox env failed before this mode)"


def read_run(path):
    """Counts, detected environment, tf.distribute outcomes and failed tests of one JUnit XML."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    distributed, failed = {}, []
    for case in suite.iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            failed.append("`{}::{}`{}".format(
                case.get("classname", "").replace(".", "/") + ".py", case.get("name"),
                ": " + message[0][:160] if message else ""))
        if not case.get("classname", "").endswith("test_distribute"):
            continue
        for label, prefix in DISTRIBUTED:
            if case.get("name", "").startswith(prefix):
                outcome = ("failed" if problem is not None else
                           "skipped" if case.find("skipped") is not None else "passed")
                distributed.setdefault(label, []).append(outcome)
    return {"counts": counts, "properties": properties, "distributed": distributed,
            "failed": failed}


def distributed_cell(runs):
    parts = []
    for mode in MODES:
        if mode not in runs:
            continue
        for label, outcomes in sorted(runs[mode]["distributed"].items()):
            ran = [o for o in outcomes if o != "skipped"]
            if not ran:
                continue
            verdict = "passed" if all(o == "passed" for o in ran) else "**failed**"
            parts.append("{} {} ({}/{})".format(
                "graph: strategy" if label == "refused" else label,
                "refused as documented" if label == "refused" and verdict == "passed" else verdict,
                ran.count("passed"), len(ran)))
    return "; ".join(parts) or "–"


def cell(counts):
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    if counts["failures"] or counts["errors"]:
        return "**failed** ({} failed, {} passed)".format(counts["failures"] + counts["errors"], passed)
    if passed == 0:
        return "**no test ran**"
    return "passed ({}{})".format(passed, ", {} skipped".format(counts["skipped"]) if counts["skipped"] else "")


def unsupported(properties, mode):
    """True when the dispatch table has no backend for this TF / Keras in ``mode``."""
    # "" (or "None" from older runs): Keras 3 on JAX / PyTorch, without TensorFlow.
    tf_version = properties.get("tensorflow")
    other = environment.Environment(
        Version(tf_version) if tf_version not in (None, "", "None") else None,
        properties["keras"], properties["keras_version"], mode,
        properties.get("keras_backend") or None)
    try:
        dispatch.choose_backend(other)
    except LookaheadError:
        return True
    return False


def tox_envs():
    """(CI subset: envlist, full sweep: the ``full`` label) from tox.ini."""
    tox = configparser.ConfigParser()
    tox.read(os.path.join(ROOT, "tox.ini"))
    envlist = tox["tox"]["envlist"].replace(",", " ").split()
    labels = {}
    for line in tox["tox"].get("labels", "").strip().splitlines():
        name, _, envs = line.partition("=")
        labels[name.strip()] = envs.replace(",", " ").split()
    return envlist, labels.get("full", envlist)


def keras_backend(properties):
    """The Keras 3 backend a run used ("tensorflow", "jax", "torch"), "" before Keras 3."""
    if properties.get("keras_backend"):
        return properties["keras_backend"]
    # Runs from before the property: the Keras name tells it.
    keras = properties.get("keras", "")
    if keras == environment.KERAS_3:
        return "tensorflow"
    if keras.startswith("keras 3 ("):
        return keras[len("keras 3 ("):].split()[0]
    return ""


def row_keras_backend(row):
    """A matrix row's Keras backend; rows written before the column infer it from the
    Keras label ("keras 3 3.15.1" is Keras 3 on TensorFlow, "keras 3.15.1 (jax backend)")."""
    if "keras_backend" in row:
        return row["keras_backend"]
    label = row.get("keras") or ""
    if label.startswith("keras 3 "):
        return "tensorflow"
    if label.endswith(" backend)"):
        return label.rsplit("(", 1)[1].split()[0]
    return ""


def env_row(results, record):
    """One row of the matrix from an env's record and its JUnit files."""
    env_name, packages = record["env"], record["packages"]
    runs, seen = {}, None
    for mode in MODES:
        xml = os.path.join(results, "{}--{}.xml".format(env_name, mode))
        # A file from an earlier run of this env (e.g. the mode's process crashed) is not
        # this run's: the record is written first, so a result of this run is newer.
        if os.path.exists(xml) and os.path.getmtime(xml) >= record.get("_mtime", 0):
            runs[mode] = read_run(xml)
            seen = runs[mode]["properties"]
    cells, notes = {}, {}
    for mode in MODES:
        if mode in runs:
            cells[mode] = "{} — `{}`".format(cell(runs[mode]["counts"]),
                                             runs[mode]["properties"].get("backend"))
            if runs[mode]["failed"]:
                notes[mode] = runs[mode]["failed"]
        elif seen is not None and unsupported(seen, mode):
            cells[mode] = "not supported"
        else:
            cells[mode] = NOT_RUN
    keras = (seen or {}).get("keras", "?")
    keras_version = packages.get("tf-keras") if keras == environment.KERAS_TF_KERAS else \
        packages.get("keras") or (seen or {}).get("keras_version")
    return {"env": env_name, "python": record["python"],
            "tensorflow": packages.get("tensorflow") or NO_TENSORFLOW,
            "keras": environment.keras_label(keras, keras_version),
            "keras_backend": keras_backend(seen or {}),
            "numpy": packages.get("numpy"), "graph": cells[environment.GRAPH],
            "eager": cells[environment.EAGER], "distribute": distributed_cell(runs),
            "date": record.get("date", "?"), "commit": record.get("commit", "?"), "notes": notes}


def install_failures(tox_json):
    """{env: row} for envs of tox's --result-json whose setup (pip install) failed."""
    if not tox_json or not os.path.exists(tox_json):
        return {}
    with open(tox_json) as handle:
        report = json.load(handle)
    # tox writes the report when the run ends; the install failures happened in this checkout
    date = datetime.datetime.utcfromtimestamp(os.path.getmtime(tox_json)).strftime(
        "%Y-%m-%d %H:%M UTC")
    out = {}
    for name, env in report.get("testenvs", {}).items():
        failed = [step for step in env.get("setup", []) if step.get("retcode")]
        if env.get("result", {}).get("success", True) and not failed:
            continue
        if env.get("test"):
            continue                       # the tests ran: their JUnit files tell the rest
        if failed:
            lines = [l for l in (failed[-1].get("err", "") + failed[-1].get("output", ""))
                     .splitlines() if l.startswith("ERROR")] or ["exit code {}".format(
                         failed[-1].get("retcode"))]
            why = "`{}` failed: {}".format(failed[-1].get("run_id", "setup"),
                                          " ".join(lines[-2:])[:400])
        else:
            why = "tox could not create the env (is its Python on PATH?)"
        out[name] = {"env": name, "python": "?", "tensorflow": "?", "keras": "?",
                     "keras_backend": "?", "numpy": "?",
                     "graph": "**install failed**", "eager": "**install failed**",
                     "distribute": "–", "date": date, "commit": commit(),
                     "notes": {"install": [why]}}
    return out


def fresh_rows(results, tox_json=None):
    """{env: row} of every record in ``results`` (and install failures of ``tox_json``)."""
    rows = install_failures(tox_json)
    for record_path in glob.glob(os.path.join(results, "*.json")):
        with open(record_path) as handle:
            record = json.load(handle)
        if "env" not in record or "packages" not in record:
            continue                       # tox's own --result-json
        record["_mtime"] = os.path.getmtime(record_path)
        row = env_row(results, record)
        if row["env"] not in rows or rows[row["env"]]["date"] <= row["date"]:
            rows[row["env"]] = row
    return rows


def merge(matrix, rows, full=False):
    """Put the newer of each env's rows into ``matrix``; a full sweep also dates the matrix."""
    envs = matrix.setdefault("envs", {})
    for name, row in rows.items():
        if name not in envs or envs[name]["date"] <= row["date"]:
            envs[name] = row
    if full and rows:
        newest = max(rows.values(), key=lambda r: r["date"])
        matrix["full_sweep"] = {"date": newest["date"], "commit": newest["commit"]}
    return matrix


def footnote_mark(row, key):
    return "[^{}-{}]".format(row["env"], key) if row.get("notes", {}).get(key) else ""


def row_line(row):
    return "| {} | {} | {} | {} | {} | {} | {}{} | {}{} | {} | {}, `{}` |".format(
        row["env"], row["python"], row["tensorflow"], row["keras"], row_keras_backend(row),
        row["numpy"],
        row["graph"], footnote_mark(row, environment.GRAPH) or footnote_mark(row, "install"),
        row["eager"], footnote_mark(row, environment.EAGER),
        row["distribute"], row["date"], row["commit"])


def render(matrix, order):
    envs = matrix.get("envs", {})
    sweep = matrix.get("full_sweep")
    names = list(order) + sorted(name for name in envs if name not in order)
    lines = [
        "# Compatibility matrix",
        "",
        "Generated by `tools/compat_matrix.py` from tox runs (`.ci/run --full`: every env; "
        "`.ci/run`: the CI subset, merged into the last full sweep); do not edit by hand. "
        "Last full sweep: {}. Each row is the newest run of its env, with that run's date and "
        "commit (`+dirty`: uncommitted changes), so a row older than the sweep did not run in "
        "it.".format("{} at commit {}".format(sweep["date"], sweep["commit"]) if sweep
                     else "none yet"),
        "",
        "Each cell is one pytest process of the suite in that mode (graph: "
        "`tf.compat.v1.disable_eager_execution()`, TF 1.x's only mode; eager: both "
        "`tf.function` and `run_eagerly=True` steps; Keras 3 on JAX: `jit_compile=True` and "
        "`run_eagerly=True` steps; on PyTorch: `torch.compile` (`jit_compile=True`) and plain "
        "steps), with the backend `inject` chose; a failed cell names its failed tests in a "
        "footnote. Versions are those the env installed. Keras backend: the backend Keras 3 "
        "ran on (blank for Keras 2); with jax or torch TensorFlow is not installed (–) and "
        "the TensorFlow-only tests skip. The tf.distribute column counts the MirroredStrategy "
        "(2 logical CPUs) and two-worker MultiWorkerMirroredStrategy equality tests that ran "
        "(skips are not counted).",
        "",
        "| tox env | Python | TensorFlow | Keras that builds the model | Keras backend | numpy "
        "| graph mode | eager mode | tf.distribute (tests/test_distribute.py) | run (UTC), commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name in names:
        row = envs.get(name)
        if row is None:
            lines.append("| {} | | | | | | not run yet | not run yet | | |".format(name))
            continue
        lines.append(row_line(row))
        for key in ("install",) + MODES:
            failed = row.get("notes", {}).get(key)
            if failed:
                shown = failed[:MAX_FAILED_NAMED] + (
                    ["and {} more".format(len(failed) - MAX_FAILED_NAMED)]
                    if len(failed) > MAX_FAILED_NAMED else [])
                notes.append("[^{}-{}]: {} {}: {}".format(
                    name, key, name, "install" if key == "install" else key + " mode",
                    "; ".join(shown)))
    return "\n".join(lines + ([""] + notes if notes else []) + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(ROOT, ".tox", "results"))
    parser.add_argument("--tox-json", help="tox's --result-json of the run: envs whose "
                                           "install failed get a row that says so")
    parser.add_argument("--matrix", default=os.path.join(ROOT, "compat_matrix.json"),
                        help="the merged results (read, then rewritten)")
    parser.add_argument("--output", default=os.path.join(ROOT, "compat_matrix.md"))
    parser.add_argument("--full", action="store_true",
                        help="this run was the full sweep: its date heads the matrix")
    args = parser.parse_args(argv)
    rows = fresh_rows(args.results, args.tox_json) if os.path.isdir(args.results) else {}
    if not rows and not os.path.exists(args.matrix):
        raise SystemExit("no tox results in {}: run tox first".format(args.results))
    matrix = {}
    if os.path.exists(args.matrix):
        with open(args.matrix) as handle:
            matrix = json.load(handle)
    merge(matrix, rows, full=args.full)
    with open(args.matrix, "w") as out:
        json.dump(matrix, out, indent=1, sort_keys=True)
        out.write("\n")
    order = tox_envs()[1]
    with open(args.output, "w") as out:
        out.write(render(matrix, order))
    for name in sorted(rows, key=lambda n: order.index(n) if n in order else len(order)):
        print(row_line(rows[name]))
    print("wrote {} ({} envs from this run merged; {} envs in all)".format(
        args.output, len(rows), len(matrix["envs"])))


if __name__ == "__main__":
    main()
