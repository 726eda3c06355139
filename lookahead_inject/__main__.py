"""Command line: ``python -m lookahead_inject {info,demo,selftest}`` (also ``lookahead-inject``)."""

import argparse
import os
import sys

from .errors import LookaheadError
from .rule import OPTIMIZER_STATES


def explain(error, echo=print):
    """Print why this Python cannot run Lookahead, and the supported table once."""
    from .dispatch import supported_summary
    message, table = str(error), supported_summary()
    echo(message)
    if table not in message:
        echo("supported:\n" + table)


def info(args, echo=print):
    from . import detect
    from .dispatch import supported_summary, why
    from .environment import detect_environment
    try:
        environment = detect_environment()
        found = detect()
    except LookaheadError as error:
        explain(error, echo)
        return 1
    if found["tensorflow"] is None:
        # Keras 3 on JAX / PyTorch: TensorFlow, installed or not, plays no part.
        echo("tensorflow     not used (Keras 3 runs on {})".format(found["keras_backend"]))
        echo("keras          {}  (import keras)".format(found["keras_label"]))
    else:
        echo("tensorflow     {}".format(found["tensorflow"]))
        echo("keras          {}  (tf.keras)".format(found["keras_label"]))
    echo("mode           {}".format(found["mode"]))
    echo("backend        {}  ({})".format(found["backend"], why(environment, found["backend"])))
    if found["tensorflow"] is not None:
        _standalone_keras(environment, echo)
        _keras_3_and_tf_keras(environment, echo)
        echo("tf.distribute  {}".format(found["distribute"]))
    if found["checkpoints"]:
        echo("state rides in {}".format("; ".join(found["checkpoints"])))
        echo("               and la.save(path) / la.load(path) everywhere")
    else:
        # Keras 3 on JAX / PyTorch: its .keras / .weights.h5 files leave the state out.
        echo("state rides in la.save(path) / la.load(path) (no model file carries it here)")
    echo("supported:\n" + supported_summary())
    return 0


def _standalone_keras(environment, echo):
    """The backend a model built by standalone ``import keras`` gets, if that Keras is here."""
    from .dispatch import choose_backend, why
    from .environment import KERAS_STANDALONE, installed_standalone_keras, keras_label
    version = installed_standalone_keras(environment.tf_version)
    if version is None:
        return
    standalone = environment._replace(keras=KERAS_STANDALONE, keras_version=version)
    label = keras_label(KERAS_STANDALONE, version)
    try:
        echo("import keras   {}: its models get backend {}  ({})".format(
            label, choose_backend(standalone), why(standalone, choose_backend(standalone))))
    except LookaheadError as error:
        echo("import keras   {}: its models are refused: {}".format(label, error))


def _keras_3_and_tf_keras(environment, echo):
    """TF >= 2.16 with Keras 3 and tf-keras both importable: the backend a model of each
    gets (the model's Keras decides, not tf.keras / TF_USE_LEGACY_KERAS)."""
    from .dispatch import choose_backend, why
    from .environment import both_kerases, keras_label
    for line, built in both_kerases(environment):
        label = keras_label(built.keras, built.keras_version)
        try:
            backend = choose_backend(built)
            echo("{:<14} {}: its models get backend {}  ({})".format(
                line, label, backend, why(built, backend, line)))
        except LookaheadError as error:
            echo("{:<14} {}: its models are refused: {}".format(
                line, label, str(error).split("\n")[0]))


def demo(args, echo=print):
    from . import detect
    try:
        # Before the demo's own imports (numpy, scikit-learn): without TensorFlow or
        # without a backend for it, say so as `info` does, not with an ImportError.
        detect()
        from . import demo as demo_module
        demo_module.run(epochs=args.epochs, seeds=args.seeds, learning_rates=args.lrs,
                        k=args.k, alpha=args.alpha, verbose=1 if args.verbose else 0,
                        plot=args.plot, echo=echo, optimizer_state=args.optimizer_state,
                        momentum=args.momentum)
    except LookaheadError as error:
        explain(error, echo)
        return 1
    return 0


def selftest(args, echo=print):
    from . import selftest as selftest_module
    try:
        return selftest_module.run(echo=echo)
    except LookaheadError as error:
        explain(error, echo)
        return 1


def parser():
    top = argparse.ArgumentParser(prog="lookahead-inject",
                                  description="Lookahead for compiled Keras models.")
    commands = top.add_subparsers(dest="command")
    commands.add_parser("info", help="the TF (or Keras 3 backend) and Keras found, the backend "
                                     "inject picks and why")
    demo_parser = commands.add_parser(
        "demo",
        help="train a digits classifier with SGD and with SGD + Lookahead over "
             "learning rates and seeds; print the table, optionally plot it",
        description="Train an MLP on scikit-learn's digits with SGD and with SGD + "
                    "Lookahead, for each learning rate and seed; print final training loss "
                    "and test accuracy (mean ± std over seeds). Needs TensorFlow (or Keras 3 "
                    "on JAX / PyTorch) and scikit-learn (matplotlib for --plot): from a "
                    "clone, pip install \".[demo]\" tensorflow")
    demo_parser.add_argument("--epochs", type=int, default=10, help="epochs per training run (default: %(default)s)")
    demo_parser.add_argument("--seeds", type=int, default=3,
                             help="training runs per learning rate and optimizer, seeds 0, 1, ... "
                                  "(default: %(default)s)")
    demo_parser.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0],
                             metavar="LR", help="SGD learning rates (default: 0.03 0.1 0.3 1.0)")
    demo_parser.add_argument("--k", type=int, default=5,
                             help="Lookahead's k: fast steps between two syncs (default: %(default)s)")
    demo_parser.add_argument("--alpha", type=float, default=0.5,
                             help="Lookahead's alpha: how far the slow weights move towards the "
                                  "fast ones at a sync (default: %(default)s)")
    demo_parser.add_argument("--optimizer-state", choices=OPTIMIZER_STATES,
                             default="keep", help="what each sync does to SGD's momentum "
                             "(inject's optimizer_state; reset and pullback need --momentum; "
                             "default: %(default)s)")
    demo_parser.add_argument("--momentum", type=float, default=0.0,
                             help="SGD momentum, for both columns (default: %(default)s)")
    demo_parser.add_argument("--plot", metavar="FILE.png", default=None,
                             help="also write the loss curves and accuracy-vs-learning-rate "
                                  "plot to this file (matplotlib)")
    demo_parser.add_argument("--verbose", action="store_true", help="show Keras' progress bars")
    commands.add_parser("selftest", help="check Lookahead against numpy in every mode of the "
                                         "installed TF (or Keras 3 on JAX / PyTorch); non-zero "
                                         "exit on a mismatch")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    # TensorFlow's C++ start-up notes (CPU features, CUDA not found) would bury the output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {"info": info, "demo": demo, "selftest": selftest}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
