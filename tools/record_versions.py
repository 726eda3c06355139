"""Write the versions a tox env installed, with the date and the commit of the run, to
RESULTS/ENVNAME.json (read by compat_matrix.py)."""

import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The matrix itself is rewritten by every run: a change there does not make the code dirty.
NOT_CODE = (":(exclude)compat_matrix.md", ":(exclude)compat_matrix.json")

PACKAGES = ("tensorflow", "keras", "tf-keras", "jax", "jaxlib", "torch", "numpy", "protobuf", "h5py",
            "lookahead_inject")


def installed(name):
    try:
        import importlib.metadata as metadata      # Python >= 3.8
    except ImportError:                             # Python 3.7
        import pkg_resources
        try:
            return pkg_resources.get_distribution(name).version
        except pkg_resources.DistributionNotFound:
            return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git(*args):
    try:
        return subprocess.run(("git", "-C", ROOT) + args, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit():
    """The short commit of the checkout under test, "+dirty" with uncommitted changes."""
    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE)
    return head + ("+dirty" if dirty else "")


def main(results, envname):
    os.makedirs(results, exist_ok=True)
    record = {"env": envname, "python": platform.python_version(),
              "packages": {name: installed(name) for name in PACKAGES},
              "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
              "commit": commit()}
    with open(os.path.join(results, envname + ".json"), "w") as out:
        json.dump(record, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
