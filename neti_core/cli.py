"""``neti``: the operator's command line (config check, registry audit; lab, report, sg, check)."""

from __future__ import annotations

import argparse
import json
import sys

from neti_core import __version__
from neti_core.cliutil import DEFAULT_CONFIG, fail, load_config_or_exit

PROG = "neti"
_NOT_YET = {
    "lab": "the lab (local fleet with ZooKeeper, EC2 API and console)",
    "report": "the fleet report (which instances run Neti)",
    "sg": "security-group helpers",
    "check": "the Nagios/Sensu rule check",
    "zk-proxy": "the ZooKeeper proxy rules",
}


def _config_check(args: argparse.Namespace) -> int:
    config = load_config_or_exit(PROG, args.config)
    print(f"{args.config}: ok (zk_prefix {config.zk_prefix}, overlay {config.overlay_subnet}, "
          f"reject_all {str(config.reject_all).lower()})")
    return 0


def _registry_audit(args: argparse.Namespace) -> int:
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    from neti_core.model import Side
    from neti_core.registry import OverlayRegistry

    config = load_config_or_exit(PROG, args.config)
    hosts = args.zk or config.zk_connect_string(Side(args.side))
    client = KazooClient(hosts=hosts, read_only=not args.repair)
    try:
        client.start(timeout=args.timeout)
    except KazooTimeoutError:
        fail(PROG, f"cannot reach ZooKeeper at {hosts} within {args.timeout:g} s", status=1)
    try:
        registry = OverlayRegistry(client, config.zk_paths, config.overlay_subnet)
        problems = registry.audit()
        fixed = registry.repair(problems) if args.repair else []
    finally:
        client.stop()
        client.close()
    if args.json:
        print(json.dumps([{"kind": p.kind, "detail": p.detail, "repairable": p.repairable,
                           "repaired": p in fixed} for p in problems]))
    else:
        for problem in problems:
            mark = "repaired" if problem in fixed else ("repairable" if problem.repairable else "manual")
            print(f"{problem.kind:18} {mark:10} {problem.detail}")
        print(f"{len(problems)} problems, {len(fixed)} repaired")
    return 1 if len(problems) > len(fixed) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Neti operations command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="validate a neti.yml")
    config.add_argument("action", choices=["check"])
    config.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    config.set_defaults(handler=_config_check)

    registry = commands.add_parser("registry", help="audit (and repair) the overlay-IP maps")
    registry.add_argument("action", choices=["audit"])
    registry.add_argument("-c", "--config", default=str(DEFAULT_CONFIG))
    registry.add_argument("--zk", help="ZooKeeper connect string (default: zk_hosts of --side)")
    registry.add_argument("--side", choices=["ec2", "vpc"], default="vpc")
    registry.add_argument("--repair", action="store_true", help="fix what can be fixed safely")
    registry.add_argument("--json", action="store_true")
    registry.add_argument("--timeout", type=float, default=10.0)
    registry.set_defaults(handler=_registry_audit)

    for name, what in _NOT_YET.items():
        placeholder = commands.add_parser(name, help=f"{what} (not yet)")
        placeholder.add_argument("rest", nargs=argparse.REMAINDER)
        placeholder.set_defaults(handler=lambda _args, what=what: _not_yet(what))
    return parser


def _not_yet(what: str) -> int:
    print(f"{PROG}: {what} is not implemented yet", file=sys.stderr)
    return 3


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
