"""``neti config check``: validate a neti.yml (one line naming the key, exit 2, when it is bad)."""

from __future__ import annotations

import argparse

from neti_core.cliutil import load_config_or_exit
from neti_core.ops.common import PROG, Subparsers, add_config_argument


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("config", help="validate a neti.yml")
    parser.add_argument("action", choices=["check"])
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(PROG, args.config)
    print(f"{args.config}: ok (zk_prefix {config.zk_prefix}, overlay {config.overlay_subnet}, "
          f"reject_all {str(config.reject_all).lower()})")
    return 0
