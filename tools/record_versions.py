"""Write the versions a tox env installed to RESULTS/ENVNAME.json (read by compat_matrix.py)."""

import json
import os
import platform
import sys

PACKAGES = ("tensorflow", "keras", "tf-keras", "numpy", "protobuf", "h5py", "lookahead_inject")


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


def main(results, envname):
    os.makedirs(results, exist_ok=True)
    record = {"env": envname, "python": platform.python_version(),
              "packages": {name: installed(name) for name in PACKAGES}}
    with open(os.path.join(results, envname + ".json"), "w") as out:
        json.dump(record, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
