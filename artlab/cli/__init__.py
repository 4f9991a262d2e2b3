"""`python -m artlab COMMAND ...`: every entry point of ArtLab is a command.

Each command module registers its sub-commands and imports torch and friends only
when a command runs, so `--help` answers at once.
"""

import argparse
import importlib
import logging
import shlex
import sys

# One module per family of commands; each defines register(subparsers).
COMMAND_MODULES = [
    "artlab.cli.image",
    "artlab.cli.finetune",
    "artlab.cli.text",
    "artlab.cli.gallery",
    "artlab.cli.settings",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m artlab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # What model cards record as the command that made them.
    args.command_line = "python -m artlab " + shlex.join(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
