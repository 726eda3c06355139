"""Regenerate the README's demo picture and table (never edit them by hand).

    python tools/make_demo_picture.py      # in a Python with TF and lookahead_inject[demo]

Runs README's ``python -m lookahead_inject demo --plot demo.png`` in a scratch folder,
moves the picture to docs/demo.png and puts the table it printed into README.md between
the ``demo-output`` markers.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = ["-m", "lookahead_inject", "demo", "--plot", "demo.png"]


def main():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    scratch = tempfile.mkdtemp()
    out = subprocess.run([sys.executable] + COMMAND, cwd=scratch, env=env, check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    shutil.move(os.path.join(scratch, "demo.png"), os.path.join(ROOT, "docs", "demo.png"))
    shutil.rmtree(scratch)
    table = "\n".join(l for l in out.splitlines() if not l.startswith("wrote "))
    readme_path = os.path.join(ROOT, "README.md")
    with open(readme_path) as handle:
        readme = handle.read()
    block = "<!-- demo-output:start -->\n```text\n$ python {}\n{}\n```\n<!-- demo-output:end -->".format(
        " ".join(COMMAND), table.strip())
    new, count = re.subn(r"<!-- demo-output:start -->.*?<!-- demo-output:end -->", block,
                         readme, flags=re.S)
    if count != 1:
        raise SystemExit("README.md needs one pair of demo-output markers")
    with open(readme_path, "w") as handle:
        handle.write(new)
    print("wrote docs/demo.png and the README table")


if __name__ == "__main__":
    main()
