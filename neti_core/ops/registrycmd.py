"""``neti registry audit|reclaim``: the overlay-IP maps checked, repaired, and given back.

``audit``: half-written pairs are what the original, non-transactional agents left behind;
``--repair`` fixes only what cannot overwrite a live claim (see OverlayRegistry.repair).
``reclaim``: the addresses of instances that are gone (see :mod:`neti_core.ops.reclaimcmd`).
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
    parser = subparsers.add_parser(
        "registry", help="audit (and repair) the overlay-IP maps; reclaim addresses of gone instances",
        description="audit: check ip-to-id against id-to-ip (--repair fixes what is safe). "
                    "reclaim: list the addresses of instances that are gone for longer than "
                    "reclaim_quarantine (plan), --apply releases them.")
    parser.add_argument("action", choices=["audit", "reclaim"])
    add_config_argument(parser)
    add_zk_arguments(parser)
    parser.add_argument("--repair", action="store_true", help="audit: fix what can be fixed safely")
    parser.add_argument("--apply", action="store_true",
                        help="reclaim: start the quarantine of newly gone instances and release "
                             "the addresses whose quarantine is over")
    parser.add_argument("--auto", action="store_true",
                        help="reclaim: the unattended form for cron (needs reclaim_auto: true "
                             "in neti.yml; with --apply)")
    parser.add_argument("--metrics-file", metavar="PATH",
                        help="reclaim: also write used/free/reclaimable as Prometheus text "
                             "(node_exporter's textfile collector)")
    add_json_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from neti_core.cliutil import fail

    reclaim_only = [flag for flag, on in (("--apply", args.apply), ("--auto", args.auto),
                                          ("--metrics-file", args.metrics_file)) if on]
    if args.action == "audit" and reclaim_only:
        fail(PROG, f"{reclaim_only[0]} goes with 'registry reclaim', not 'registry audit'")
    if args.action == "reclaim":
        if args.repair:
            fail(PROG, "--repair goes with 'registry audit'; reclaim releases with --apply")
        from neti_core.ops.reclaimcmd import run_reclaim

        return run_reclaim(args)
    return _audit(args)


def _audit(args: argparse.Namespace) -> int:
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
