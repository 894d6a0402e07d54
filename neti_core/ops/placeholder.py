"""A subcommand that is announced but not built yet: it says so and exits 3 (Nagios' UNKNOWN)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from neti_core.ops.common import PROG, Subparsers

EXIT_NOT_YET = 3


def placeholder(name: str, what: str) -> Callable[[Subparsers], None]:
    """An ``add_parser`` for a command that is still to come."""

    def add_parser(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser(name, help=f"{what} (not yet)")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=lambda _args: _not_yet(what))

    return add_parser


def _not_yet(what: str) -> int:
    print(f"{PROG}: {what} is not implemented yet", file=sys.stderr)
    return EXIT_NOT_YET
