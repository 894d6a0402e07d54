"""``neti-agent``: validates its configuration; the reconcile loop arrives with the agent issue."""

from __future__ import annotations

import argparse
import sys

from neti_core import __version__
from neti_core.cliutil import DEFAULT_CONFIG, load_config_or_exit

PROG = "neti-agent"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti host agent.")
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--dry-run", action="store_true", help="print the rules, change nothing")
    parser.add_argument("--once", action="store_true", help="sync once and exit")
    parser.add_argument("--flush", action="store_true", help="remove every rule Neti installed")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_config_or_exit(PROG, args.config)
    print(f"{PROG}: configuration ok; the reconcile loop is not implemented yet", file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
