"""``neti zk secure|open|digest``: put ACLs on an existing tree (plan first), take them off again.

``secure`` and ``open`` print the plan and change nothing without ``--apply``; a second run of an
applied plan prints "nothing to change". ``digest`` prints the principals-file line of one identity
(the digest, never the secret), which is what provisioning collects from each host.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neti_core.cliutil import load_config_or_exit
from neti_core.errors import ConfigError
from neti_core.ops.common import PROG, Subparsers, add_config_argument, add_zk_arguments, zk_session


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "zk", help="secure an open ZooKeeper tree with ACLs (plan first), open it again, print digests",
        description="secure: set the ACLs of docs/security.md on every node (needs --principals). "
                    "open: put every node back to world:anyone (the rollback). Both print the plan "
                    "and change nothing without --apply. digest: the principals-file line of one "
                    "identity.")
    parser.add_argument("action", choices=["secure", "open", "digest"])
    parser.add_argument("--principals", type=Path, metavar="FILE",
                        help="secure: lines 'operator|readonly|agent-role|agent identity:digest'")
    parser.add_argument("--apply", action="store_true", help="change the tree (default: plan only)")
    parser.add_argument("--kind", choices=["operator", "readonly", "agent-role", "agent"], default="agent",
                        help="digest: the kind for the printed line")
    parser.add_argument("--identity", help="digest: the identity (default: zk_identity of neti.yml)")
    parser.add_argument("--secret-file", type=Path, help="digest: the secret (default: zk_secret_file)")
    add_config_argument(parser)
    add_zk_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from neti_core.cliutil import fail

    if args.action == "digest":
        return _digest(args)
    from neti_core.ops import zksecure

    principals = None
    if args.action == "secure":
        if args.principals is None:
            fail(PROG, "zk secure needs --principals FILE (see 'neti zk digest')")
        try:
            principals = zksecure.Principals.load(args.principals)
        except ConfigError as exc:
            fail(PROG, str(exc))
    config = load_config_or_exit(PROG, args.config)
    paths = config.zk_paths
    with zk_session(config, args, read_only=False) as client:
        changes, notes = zksecure.plan(client, paths, principals)
        for note in notes:
            print(f"note: {note}")
        for change in changes:
            print(f"{'set' if args.apply else 'would set'} ACL of {change.path}: {change.why}")
        if not changes:
            print(f"{paths.prefix}: nothing to change")
            return 0
        if args.apply:
            zksecure.apply(client, paths, principals, changes)
            print(f"{len(changes)} nodes changed")
        else:
            print(f"{len(changes)} nodes would change; run again with --apply")
    return 0


def _digest(args: argparse.Namespace) -> int:
    from neti_core.cliutil import fail
    from neti_core.zkacl import AGENT_ROLE, digest_of
    from neti_core.zkclient import read_secret

    identity, secret_file = args.identity, args.secret_file
    if identity is None or secret_file is None:
        config = load_config_or_exit(PROG, args.config)
        identity = identity or (AGENT_ROLE if args.kind == "agent-role" else config.zk_identity)
        secret_file = secret_file or (config.zk_shared_agent_secret_file if args.kind == "agent-role"
                                      else config.zk_secret_file)
    if identity is None or secret_file is None:
        fail(PROG, "digest needs --identity and --secret-file (or zk_identity / zk_secret_file)")
    try:
        print(f"{args.kind} {digest_of(identity, read_secret(Path(secret_file), 'secret file'))}")
    except ConfigError as exc:
        fail(PROG, str(exc))
    return 0
