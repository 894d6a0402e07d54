"""``neti registry audit``: check the ip-to-id / id-to-ip maps against each other, repair if asked.

Half-written pairs are what the original, non-transactional agents left behind; ``--repair`` fixes
only what cannot overwrite a live claim (see OverlayRegistry.repair).
"""

from __future__ import annotations

import argparse

from neti_core.cliutil import load_config_or_exit
from neti_core.ops.common import (
    PROG,
    Subparsers,
    add_config_argument,
    add_json_argument,
    add_zk_arguments,
    zk_session,
)
from neti_core.ops.output import print_json


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("registry", help="audit (and repair) the overlay-IP maps")
    parser.add_argument("action", choices=["audit"])
    add_config_argument(parser)
    add_zk_arguments(parser)
    parser.add_argument("--repair", action="store_true", help="fix what can be fixed safely")
    add_json_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from neti_core.registry import OverlayRegistry

    config = load_config_or_exit(PROG, args.config)
    with zk_session(config, args, read_only=not args.repair) as client:
        registry = OverlayRegistry(client, config.zk_paths, config.overlay_subnet)
        problems = registry.audit()
        fixed = registry.repair(problems) if args.repair else []
    if args.json:
        print_json([{"kind": p.kind, "detail": p.detail, "repairable": p.repairable,
                     "repaired": p in fixed} for p in problems])
    else:
        for problem in problems:
            mark = "repaired" if problem in fixed else ("repairable" if problem.repairable else "manual")
            print(f"{problem.kind:18} {mark:10} {problem.detail}")
        print(f"{len(problems)} problems, {len(fixed)} repaired")
    return 1 if len(problems) > len(fixed) else 0
