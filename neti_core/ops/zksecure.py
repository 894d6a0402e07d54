"""Securing an existing open tree in place (and opening it again): the plan, then its application.

The plan is computed from one walk of the tree (every node's ACL and, for agent-owned nodes, whose
they are) and the principals file; applying it is one ``setACL`` per node that differs, folders
first so an agent that reconnects mid-way can already create its children. Idempotent: a tree
already as planned yields an empty plan. Running agents keep their sessions; ACLs are checked on
each request, and an agent with credentials re-reads the principals when it reconnects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import ACL, OPEN_ACL_UNSAFE

from neti_core.config import ZkPaths
from neti_core.errors import ConfigError, MalformedEntryError
from neti_core.members import parse_party_entry
from neti_core.party.mirror import ALL_BUCKETS
from neti_core.registry import read_params
from neti_core.zkacl import AGENT_ROLE, TreeAcl, identity_of, membership_folders, operator_folders
from neti_core.zkclient import install_acl, principals_path

KINDS = ("operator", "readonly", "agent-role", "agent")


@dataclass(frozen=True, slots=True)
class Principals:
    """The principals file: ``KIND identity:digest`` per line (``neti zk digest`` prints them)."""

    tree: TreeAcl
    agents: dict[str, str]  # instance id -> digest

    @classmethod
    def parse(cls, text: str, source: str) -> Principals:
        operators, readers, agent_role, agents = [], [], None, {}
        for number, raw_line in enumerate(text.splitlines(), 1):
            parts = raw_line.split("#", 1)[0].split()
            if not parts:
                continue
            if len(parts) != 2 or parts[0] not in KINDS or ":" not in parts[1]:
                raise ConfigError(f"line {number}", f"expected 'KIND identity:digest' with KIND one of "
                                                    f"{', '.join(KINDS)}", source)
            kind, digest = parts
            if kind == "operator":
                operators.append(digest)
            elif kind == "readonly":
                readers.append(digest)
            elif kind == "agent-role":
                if identity_of(digest) != AGENT_ROLE:
                    raise ConfigError(f"line {number}", f"the agent role is named {AGENT_ROLE!r}", source)
                agent_role = digest
            else:
                agents[identity_of(digest)] = digest
        if not operators:
            raise ConfigError("operator", "at least one operator is needed (or nobody could undo this)",
                              source)
        return cls(TreeAcl(tuple(operators), tuple(readers), agent_role), agents)

    @classmethod
    def load(cls, path: Path) -> Principals:
        try:
            return cls.parse(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ConfigError("(file)", f"cannot read: {exc.strerror or exc}", str(path)) from None


@dataclass(frozen=True, slots=True)
class AclChange:
    path: str
    acl: list[ACL]
    why: str


def _children(client: KazooClient, path: str) -> list[str]:
    try:
        return sorted(client.get_children(path))
    except NoNodeError:
        return []


def _agent_nodes(client: KazooClient, paths: ZkPaths) -> Iterator[tuple[str, str | None]]:
    """(path, owning instance id or None when it cannot be told) for every agent-owned node."""
    overlay_owner: dict[str, str] = {}
    for ip in _children(client, paths.ip_to_id):
        owner = client.get(f"{paths.ip_to_id}/{ip}")[0].decode(errors="replace").strip()
        overlay_owner[ip] = owner
        yield f"{paths.ip_to_id}/{ip}", owner
    for instance_id in _children(client, paths.id_to_ip):
        yield f"{paths.id_to_ip}/{instance_id}", instance_id
    for instance_id in _children(client, paths.status):
        yield f"{paths.status}/{instance_id}", instance_id
    party_folders = [paths.ip_map, *(f"{paths.members}/{bucket}" for bucket in ALL_BUCKETS)]
    for folder in party_folders:
        for entry in _children(client, folder):
            try:
                owner = overlay_owner.get(str(parse_party_entry(entry).member.overlay))
            except MalformedEntryError:
                owner = None  # a malformed entry: operators only, and the agents skip it anyway
            yield f"{folder}/{entry}", owner


def _operator_nodes(client: KazooClient, paths: ZkPaths) -> Iterator[str]:
    yield paths.maxchange
    yield paths.interval
    for folder in operator_folders(paths):
        for child in _children(client, folder):
            if f"{folder}/{child}" not in operator_folders(paths):
                yield f"{folder}/{child}"


def desired_acls(client: KazooClient, paths: ZkPaths, principals: Principals | None,
                 notes: list[str]) -> Iterator[tuple[str, list[ACL], str]]:
    """Every node of the tree with the ACL it should have (``principals`` None: open it all)."""
    tree = principals.tree if principals else TreeAcl(open=True)
    yield paths.prefix, tree.for_prefix(), "prefix"
    for folder in membership_folders(paths):
        yield folder, tree.for_membership_folder(), "agents add children, operators remove them"
    # The mirror (docs/membership.md): its root is operators-only, so no host adds, removes or
    # re-ACLs a bucket; each bucket is a membership folder, created here if absent.
    yield paths.members, tree.for_operator_node(), "the mirror's fixed buckets: operators only"
    for bucket in ALL_BUCKETS:
        yield f"{paths.members}/{bucket}", tree.for_membership_folder(), "mirror bucket: agents add children"
    for folder in operator_folders(paths):
        yield folder, tree.for_operator_node(), "operators only"
    for node in _operator_nodes(client, paths):
        yield node, tree.for_operator_node(), "operators only"
    for node, owner in _agent_nodes(client, paths):
        digest = principals.agents.get(owner or "") if principals else None
        if principals is None:
            yield node, list(OPEN_ACL_UNSAFE), "open"
        elif digest is None:
            notes.append(f"{node}: no digest for {owner or 'its owner'} in the principals file; "
                         "operators only (that agent cannot update it)")
            yield node, tree.for_operator_node(), "owner unknown"
        else:
            yield node, tree.for_agent_node(digest), f"owned by {owner}"


def _same(current: list[ACL], wanted: list[ACL]) -> bool:
    return sorted(map(repr, current)) == sorted(map(repr, wanted))


def plan(client: KazooClient, paths: ZkPaths,
         principals: Principals | None) -> tuple[list[AclChange], list[str]]:
    """What would change (nothing is written). Nodes that are absent are created by ``apply``."""
    notes: list[str] = []
    changes = []
    for path, acl, why in desired_acls(client, paths, principals, notes):
        try:
            current, _ = client.get_acls(path)
        except NoNodeError:
            if path in (paths.maxchange, paths.interval) or principals is None:
                continue
            changes.append(AclChange(path, acl, f"create ({why})"))
            continue
        if not _same(current, acl):
            changes.append(AclChange(path, acl, why))
    if principals is not None:
        document = principals.tree.to_json()
        try:
            if client.get(principals_path(paths))[0] != document:
                changes.insert(0, AclChange(principals_path(paths), principals.tree.for_operator_node(),
                                            "publish the principals"))
        except NoNodeError:
            changes.insert(0, AclChange(principals_path(paths), principals.tree.for_operator_node(),
                                        "publish the principals"))
    return changes, notes


def apply(client: KazooClient, paths: ZkPaths, principals: Principals | None,
          changes: list[AclChange]) -> None:
    """Apply a plan: the principals first (so agents reconnecting read them), then folders, nodes.

    Opening (``principals`` None) goes the other way round: nodes first, the prefix last.
    """
    ordered = changes if principals is not None else list(reversed(changes))
    for change in ordered:
        if change.path == principals_path(paths) and principals is not None:
            document = principals.tree.to_json()
            if client.exists(change.path) is None:
                client.create(change.path, document, acl=change.acl, makepath=True)
            else:
                client.set(change.path, document)
                client.set_acls(change.path, change.acl)
            continue
        if client.exists(change.path) is None:
            client.create(change.path, b"", acl=change.acl, makepath=True)
        else:
            client.set_acls(change.path, change.acl)
    if principals is None and client.exists(principals_path(paths)) is not None:
        client.delete(principals_path(paths))
    install_acl(client, paths)  # from now on what we create carries the new ACLs
    read_params(client, paths)  # maxchange/interval exist before any agent (agents may not create them)


def secure_tree(client: KazooClient, paths: ZkPaths, principals: Principals) -> list[AclChange]:
    """Plan and apply in one go (a fresh tree, the lab, the tests); what changed."""
    changes, _ = plan(client, paths, principals)
    apply(client, paths, principals, changes)
    return changes
