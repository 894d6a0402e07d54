"""``neti-console -c neti.yml [--readonly] [--operator NAME]``: the operations console."""

from __future__ import annotations

import argparse
import logging

from neti_core import __version__
from neti_core.cliutil import DEFAULT_CONFIG, fail, load_config_or_exit
from neti_core.errors import ConfigError

PROG = "neti-console"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti operations console.")
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--readonly", action="store_true", help="offer and allow no writes")
    parser.add_argument("--operator", help="name recorded in the audit log (default: $SUDO_USER or $USER)")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from textual.logging import TextualHandler

        from neti_tui.app import NetiConsoleApp
    except ModuleNotFoundError as exc:  # an agent-only install (pip install neti): say what to add
        if exc.name is None or exc.name.split(".")[0] != "textual":
            raise
        fail(PROG, "the console needs Textual: pip install 'neti[console]'")
    config = load_config_or_exit(PROG, args.config)

    try:
        app = NetiConsoleApp(config, readonly=args.readonly, operator=args.operator)
    except ConfigError as exc:  # e.g. no zk_hosts: name the file, as for any other bad key
        fail(PROG, str(ConfigError(exc.key, exc.problem, args.config)))
    # kazoo and botocore log to the root logger; on a full-screen terminal that would tear the UI,
    # so while the app runs their records go to Textual's log instead.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [TextualHandler()]
    root.setLevel(logging.WARNING)
    try:
        app.run()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
