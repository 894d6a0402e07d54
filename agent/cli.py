"""``neti-agent -c /etc/neti/neti.yml [--dry-run] [--once] [--flush]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from neti_core import __version__
from neti_core.cliutil import DEFAULT_CONFIG, EXIT_USAGE, fail, load_config_or_exit
from neti_core.config import NetiConfig
from neti_core.errors import ConfigError, NetiError
from neti_core.zkclient import CredentialsRefused

if TYPE_CHECKING:  # botocore is loaded only when the agent runs, not for --help/--version
    from neti_core.firewall.protocol import FirewallBackend
    from neti_core.imds import Identity

PROG = "neti-agent"
# How long start-up waits for the metadata service before exiting (systemd then restarts it).
STARTUP_WAIT_SECONDS = 300.0
log = logging.getLogger("neti.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti host agent.")
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--dry-run", action="store_true",
                        help="print the rules it would apply and what would change; change nothing")
    parser.add_argument("--once", action="store_true", help="sync once and exit")
    parser.add_argument("--flush", action="store_true", help="remove every rule Neti installed, and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def setup_logging(config: NetiConfig, verbose: bool) -> None:
    """Under systemd (JOURNAL_STREAM set) journald adds the time: keep lines short."""
    level = logging.DEBUG if verbose else logging.INFO
    if config.log_file is not None:
        handler: logging.Handler = logging.FileHandler(config.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def wait_for_identity(imds_url: str, timeout: float, *, give_up_after: float = STARTUP_WAIT_SECONDS,
                      sleep: Callable[[float], None] = time.sleep) -> Identity:
    """The metadata service throttles and answers late at boot (78 of 150 lab agents started at
    once got no token within 3 attempts and exited): wait for it, within a bound. An answer that
    does not parse is not asked again."""
    from agent.retry import GaveUp, retry_transient
    from neti_core.imds import MetadataUnavailable, fetch_identity

    try:
        return retry_transient(lambda: fetch_identity(imds_url, timeout),
                               what=f"the metadata service at {imds_url}",
                               is_transient=lambda exc: getattr(exc, "transient", False),
                               give_up_after=give_up_after, sleep=sleep, logger=log)
    except GaveUp as exc:
        raise MetadataUnavailable(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_config_or_exit(PROG, args.config)
    setup_logging(config, args.verbose)
    from neti_core.firewall.base import make_backend

    try:
        backend = make_backend(config)
        if args.flush:
            backend.flush()
            print(f"{PROG}: removed Neti's chains and set; other rules untouched")
            return 0
        identity = wait_for_identity(config.imds_url, config.imds_timeout_seconds)
    except NetiError as exc:
        fail(PROG, str(exc), status=1)
    if args.dry_run:
        from agent.dryrun import dry_run

        return dry_run(config, identity, backend)
    return run(config, identity, backend, once=args.once, config_path=args.config)


def run(config: NetiConfig, identity: Identity, backend: FirewallBackend, *, once: bool,
        config_path: str) -> int:
    from agent.agent import Agent
    from agent.metrics import HealthServer
    from agent.tagging import tag_in_background

    agent = Agent(config, identity, backend)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping (rules stay as they are)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    health = None
    try:
        agent.connect()
        if once:
            agent.register()
            agent.start_controls()
            agent.sync()
            status = agent.status()
            print(f"{PROG}: applied {status.members} members, reject_all {status.reject_all} "
                  f"({status.reject_all_source}), ruleset {status.ruleset_hash}")
            return 1 if status.error else 0
        agent.start()
        if config.metrics_port:
            health = HealthServer(config.metrics_address, config.metrics_port, agent.metrics,
                                  agent.health).start()
        tag_in_background(config_path, identity.instance_id, str(agent.overlay_ip))
        stop.wait()
        return 0
    except CredentialsRefused as exc:  # a wrong secret: one line, exit 2, no rule touched
        fail(PROG, str(exc), status=EXIT_USAGE)
    except ConfigError as exc:  # an unreadable or world-readable secret file
        fail(PROG, str(exc), status=EXIT_USAGE)
    except NetiError as exc:
        fail(PROG, str(exc), status=1)
    finally:
        if health is not None:
            health.stop()
        agent.stop()


if __name__ == "__main__":
    raise SystemExit(main())
