"""``neti-console``: validates its configuration; the screens arrive with the console issue."""

from __future__ import annotations

import argparse
import sys

from neti_core import __version__
from neti_core.cliutil import DEFAULT_CONFIG, load_config_or_exit

PROG = "neti-console"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti operations console.")
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--readonly", action="store_true", help="offer and allow no writes")
    parser.add_argument("--operator", help="name recorded in the audit log (default: $USER)")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_config_or_exit(PROG, args.config)
    print(f"{PROG}: configuration ok; the console is not implemented yet", file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
