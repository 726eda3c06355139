"""Write compat_matrix.md from the results of a real tox run (never edit it by hand).

    tox                                  # writes .tox/results/*.xml and *.json
    python tools/compat_matrix.py        # reads them, writes compat_matrix.md

Each tox env records the versions it installed (tools/record_versions.py) and, per
pytest run, the TF / Keras / mode / backend that lookahead_inject detected (JUnit
testsuite properties, see tests/conftest.py). A mode an env did not run is
"not supported" when the dispatch table has no backend for it.
"""

import argparse
import datetime
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from packaging.version import Version  # noqa: E402

from lookahead_inject import dispatch, environment  # noqa: E402
from lookahead_inject.errors import LookaheadError  # noqa: E402

MODES = (environment.GRAPH, environment.EAGER)


DISTRIBUTED = (("MirroredStrategy", "test_mirrored_"), ("MultiWorkerMirrored", "test_two_workers"),
               ("refused", "test_graph_mode_refuses"))


def read_run(path):
    """Counts, detected environment and tf.distribute outcomes of one pytest run's JUnit XML."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    distributed = {}
    for case in suite.iter("testcase"):
        if not case.get("classname", "").endswith("test_distribute"):
            continue
        for label, prefix in DISTRIBUTED:
            if case.get("name", "").startswith(prefix):
                outcome = ("failed" if case.find("failure") is not None or case.find("error")
                           is not None else "skipped" if case.find("skipped") is not None else "passed")
                distributed.setdefault(label, []).append(outcome)
    return counts, properties, os.path.getmtime(path), distributed


def distributed_cell(runs):
    parts = []
    for mode in MODES:
        if mode not in runs:
            continue
        for label, outcomes in sorted(runs[mode][3].items()):
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
    other = environment.Environment(Version(properties["tensorflow"]), properties["keras"],
                                    properties["keras_version"], mode, None)
    try:
        dispatch.choose_backend(other)
    except LookaheadError:
        return True
    return False


def envlist_order():
    import configparser
    tox = configparser.ConfigParser()
    tox.read(os.path.join(os.path.dirname(HERE), "tox.ini"))
    return tox["tox"]["envlist"].split()


def rows(results):
    out, newest = [], 0.0
    order = envlist_order()
    records = sorted(glob.glob(os.path.join(results, "*.json")),
                     key=lambda p: order.index(os.path.basename(p)[:-5])
                     if os.path.basename(p)[:-5] in order else len(order))
    for record_path in records:
        with open(record_path) as handle:
            record = json.load(handle)
        env_name, packages = record["env"], record["packages"]
        runs, seen = {}, None
        for mode in MODES:
            xml = os.path.join(results, "{}--{}.xml".format(env_name, mode))
            if os.path.exists(xml):
                runs[mode] = read_run(xml)
                seen = runs[mode][1]
                newest = max(newest, runs[mode][2])
        cells = []
        for mode in MODES:
            if mode in runs:
                counts, properties = runs[mode][:2]
                cells.append("{} — `{}`".format(cell(counts), properties.get("backend")))
            elif seen is not None and unsupported(seen, mode):
                cells.append("not supported")
            else:
                cells.append("**not run** (the tox env failed before this mode)")
        keras = (seen or {}).get("keras", "?")
        keras_version = packages.get("tf-keras") if keras == environment.KERAS_TF_KERAS else \
            packages.get("keras") or (seen or {}).get("keras_version")
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            env_name, record["python"], packages.get("tensorflow"),
            environment.keras_label(keras, keras_version),
            packages.get("numpy"), *(cells + [distributed_cell(runs)])))
    return out, newest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(os.path.dirname(HERE), ".tox", "results"))
    parser.add_argument("--output", default=os.path.join(os.path.dirname(HERE), "compat_matrix.md"))
    args = parser.parse_args(argv)
    table, newest = rows(args.results)
    if not table:
        raise SystemExit("no tox results in {}: run tox first".format(args.results))
    date = datetime.datetime.utcfromtimestamp(newest).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Compatibility matrix",
        "",
        "Generated by `python tools/compat_matrix.py` from the tox run that finished {}; "
        "do not edit by hand. Each cell is one pytest process of the suite in that mode "
        "(graph: `tf.compat.v1.disable_eager_execution()`, TF 1.x's only mode; eager: "
        "both `tf.function` and `run_eagerly=True` steps), with the backend `inject` "
        "chose. Versions are those the env installed. The tf.distribute column counts the "
        "MirroredStrategy (2 logical CPUs) and two-worker MultiWorkerMirroredStrategy equality "
        "tests that ran (skips are not counted).".format(date),
        "",
        "| tox env | Python | TensorFlow | Keras that builds the model | numpy | graph mode | eager mode "
        "| tf.distribute (tests/test_distribute.py) |",
        "|---|---|---|---|---|---|---|---|",
    ] + table + [""]
    with open(args.output, "w") as out:
        out.write("\n".join(lines))
    print("wrote {} ({} envs)".format(args.output, len(table)))


if __name__ == "__main__":
    main()
