"""``neti``: the operator's command line. Each subcommand lives in its own module.

A module registers itself with an ``add_parser(subparsers)`` that sets ``handler`` (args → exit
status) as a parser default. Adding a command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from neti_core import __version__
from neti_core.lab import cli as lab_cli
from neti_core.ops import check, configcmd, controlcmd, registrycmd, report, sg, zkcmd, zkproxy
from neti_core.ops.common import PROG, Subparsers

COMMANDS: list[Callable[[Subparsers], None]] = [
    configcmd.add_parser,
    registrycmd.add_parser,
    report.add_parser,
    sg.add_parser,
    check.add_parser,
    controlcmd.add_parser,
    zkproxy.add_parser,
    zkcmd.add_parser,
    lab_cli.add_parser,
]


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors are one line and exit 2, like every other bad input to ``neti``.

    Subcommand parsers are made with the class of their parent, so they inherit this.
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = OneLineErrorParser(prog=PROG, description="Neti operations command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
