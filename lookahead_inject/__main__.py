"""Command line: ``python -m lookahead_inject {info,demo}`` (also ``lookahead-inject``)."""

import argparse
import sys

from .errors import LookaheadError


def info(args):
    from . import detect
    from .dispatch import supported_summary
    try:
        found = detect()
    except LookaheadError as error:
        print(error)
        return 1
    for key in ("tensorflow", "keras", "keras_version", "mode", "backend"):
        print("{:<14} {}".format(key, found[key]))
    print("supported:\n" + supported_summary())
    return 0


def demo(args):
    from . import demo as demo_module
    try:
        demo_module.run(epochs=args.epochs, k=args.k, alpha=args.alpha,
                        verbose=1 if args.verbose else 0)
    except LookaheadError as error:
        print(error)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lookahead-inject",
                                     description="Lookahead for compiled Keras models.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("info", help="what TensorFlow is here and which backend inject picks")
    demo_parser = commands.add_parser("demo", help="train a small model with and without Lookahead")
    demo_parser.add_argument("--epochs", type=int, default=8)
    demo_parser.add_argument("--k", type=int, default=5)
    demo_parser.add_argument("--alpha", type=float, default=0.5)
    demo_parser.add_argument("--verbose", action="store_true", help="show Keras' progress bar")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"info": info, "demo": demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
