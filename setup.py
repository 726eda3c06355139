"""lookahead_inject: add Lookahead to an already compiled Keras model."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "lookahead_inject" / "__init__.py").read_text()).group(1)

setup(
    name="lookahead_inject",
    version=VERSION,
    description="Lookahead (k steps forward, 1 step back) for an already compiled Keras model, "
                "on TF 1.14 through TF 2.x with Keras 3, and on Keras 3 with JAX or PyTorch",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lookahead_inject", "lookahead_inject.*"]),
    python_requires=">=3.7",
    # TensorFlow (or Keras 3's JAX / PyTorch) is the user's own pin: never pulled in by a
    # plain install.
    install_requires=["packaging"],
    extras_require={
        "tensorflow": ["tensorflow"],
        # Keras 3 without TensorFlow: the dispatch rows keras3_jax / keras3_torch start at 3.15
        "jax": ["keras>=3.15", "jax"],
        "torch": ["keras>=3.15", "torch"],
        "demo": ["scikit-learn", "matplotlib"],
        "test": ["pytest"],
    },
    entry_points={"console_scripts": ["lookahead-inject=lookahead_inject.__main__:main"]},
    license="MIT",
)
