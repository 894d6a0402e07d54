"""``neti-agent --dry-run``: what this host's rules would become, changing nothing anywhere.

Reads ZooKeeper without registering, joining or writing defaults, and asks the backend for a
plan, which reads the kernel but never writes it (the original swapped the live ipset here).
"""

from __future__ import annotations

import time

from kazoo.exceptions import NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from agent.control_watch import read_controls_once
from agent.last_good import FILE_NAME as LAST_GOOD_FILE
from agent.membership import MembershipTracker, load_applied
from neti_core.config import NetiConfig
from neti_core.errors import NetiError
from neti_core.firewall.protocol import FirewallBackend
from neti_core.imds import Identity
from neti_core.members import ParsedParty
from neti_core.registry import OverlayRegistry, read_party
from neti_core.rules import build_ruleset
from neti_core.zkclient import make_client


def dry_run(config: NetiConfig, identity: Identity, backend: FirewallBackend) -> int:
    hosts = config.zk_connect_string(identity.side)
    client = make_client(config, hosts, timeout=config.zk_session_timeout_seconds)
    try:
        client.start(timeout=10)
    except KazooTimeoutError:
        raise NetiError(f"cannot reach ZooKeeper at {hosts}") from None
    try:
        overlay = OverlayRegistry(client, config.zk_paths, config.overlay_subnet).lookup(
            identity.instance_id)
        try:
            party, cversion = read_party(client, config.zk_paths)
        except NoNodeError:
            party, cversion = ParsedParty((), ()), 0
        controls = read_controls_once(client, config.zk_paths, identity.instance_id,
                                      config.table_files_path / LAST_GOOD_FILE)
    finally:
        client.stop()
        client.close()
    saved, _ = load_applied(config.table_files_path / "applied-members.json")
    plan = MembershipTracker(config.removal_grace_seconds, saved).plan(
        party.members, time.monotonic(), controls.maxchange)
    reject_all, source, _ = controls.reject_all(config.reject_all)
    desired = build_ruleset(identity.side, plan.members, config, reject_all)
    print(f"# {identity.instance_id} ({identity.side.value} side), overlay "
          f"{overlay or 'not registered yet: one would be allocated'}")
    print(f"# {len(plan.members)} members (membership version {cversion}, {len(party.malformed)} "
          f"malformed skipped), reject_all {str(reject_all).lower()} from {source}")
    for problem in controls.problems:
        print(f"# warning: {problem}")
    print(backend.plan(desired))
    return 0
