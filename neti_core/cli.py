"""``neti``: the operator's command line. Each subcommand lives in its own module.

A module registers itself with an ``add_parser(subparsers)`` that sets ``handler`` (args → exit
status) as a parser default. Adding a command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from neti_core import __version__
from neti_core.ops import configcmd, registrycmd, report
from neti_core.ops.common import PROG, Subparsers
from neti_core.ops.placeholder import placeholder

COMMANDS: list[Callable[[Subparsers], None]] = [
    configcmd.add_parser,
    registrycmd.add_parser,
    report.add_parser,
    placeholder("sg", "security-group helpers"),
    placeholder("check", "the Nagios/Sensu rule check"),
    placeholder("zk-proxy", "the ZooKeeper proxy rules"),
    placeholder("lab", "the lab (local fleet with ZooKeeper, EC2 API and console)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti operations command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
