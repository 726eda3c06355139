"""Command line: ``python -m lookahead_inject {info,demo,selftest}`` (also ``lookahead-inject``)."""

import argparse
import sys

from .errors import LookaheadError


def info(args, echo=print):
    from . import detect
    from .dispatch import supported_summary, why
    from .environment import detect_environment
    try:
        environment = detect_environment()
        found = detect()
    except LookaheadError as error:
        echo(str(error))
        echo("supported:\n" + supported_summary())
        return 1
    echo("tensorflow     {}".format(found["tensorflow"]))
    echo("keras          {}  (tf.keras)".format(found["keras_label"]))
    echo("mode           {}".format(found["mode"]))
    echo("backend        {}  ({})".format(found["backend"], why(environment, found["backend"])))
    _standalone_keras(environment, echo)
    echo("tf.distribute  {}".format(found["distribute"]))
    echo("state rides in {}".format("; ".join(found["checkpoints"])))
    echo("               and la.save(path) / la.load(path) everywhere")
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


def demo(args, echo=print):
    from . import demo as demo_module
    try:
        demo_module.run(epochs=args.epochs, seeds=args.seeds, learning_rates=args.lrs,
                        k=args.k, alpha=args.alpha, verbose=1 if args.verbose else 0,
                        plot=args.plot, echo=echo, optimizer_state=args.optimizer_state,
                        momentum=args.momentum)
    except LookaheadError as error:
        echo(str(error))
        return 1
    return 0


def selftest(args, echo=print):
    from . import selftest as selftest_module
    try:
        return selftest_module.run(echo=echo)
    except LookaheadError as error:
        echo(str(error))
        return 1


def parser():
    top = argparse.ArgumentParser(prog="lookahead-inject",
                                  description="Lookahead for compiled Keras models.")
    commands = top.add_subparsers(dest="command")
    commands.add_parser("info", help="the TF and Keras found, the backend inject picks and why")
    demo_parser = commands.add_parser(
        "demo", help="train a digits classifier with SGD and with SGD + Lookahead over "
                     "learning rates and seeds; print the table, optionally plot it")
    demo_parser.add_argument("--epochs", type=int, default=10)
    demo_parser.add_argument("--seeds", type=int, default=3)
    demo_parser.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0],
                             metavar="LR", help="learning rates (default: 0.03 0.1 0.3 1.0)")
    demo_parser.add_argument("--k", type=int, default=5)
    demo_parser.add_argument("--alpha", type=float, default=0.5)
    demo_parser.add_argument("--optimizer-state", choices=("keep", "reset", "pullback"),
                             default="keep", help="what a sync does to SGD's momentum "
                             "(inject's optimizer_state; reset and pullback need --momentum)")
    demo_parser.add_argument("--momentum", type=float, default=0.0,
                             help="SGD momentum, for both columns (default 0)")
    demo_parser.add_argument("--plot", metavar="FILE.png", help="write the curves (matplotlib)")
    demo_parser.add_argument("--verbose", action="store_true", help="show Keras' progress bar")
    commands.add_parser("selftest", help="check Lookahead against numpy in every mode of the "
                                         "installed TF; non-zero exit on a mismatch")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    return {"info": info, "demo": demo, "selftest": selftest}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
