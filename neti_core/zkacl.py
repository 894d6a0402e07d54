"""Who may do what in Neti's ZooKeeper tree, as ZooKeeper digest ACLs: pure values, no I/O.

Three kinds of principal (see docs/security.md):

* an **agent**: its own digest identity (its instance id + a per-host secret) that owns its party
  entry, overlay-map pair and status; and the shared ``neti-agent`` identity every agent also holds,
  whose only extra right is CREATE on the membership folders (ip-map, status, ip-to-id, id-to-ip).
  ZooKeeper puts DELETE of a child on its *parent*, so agents get no DELETE anywhere: one agent
  cannot remove another's entry, and its own ephemeral nodes vanish with its session.
* an **operator** (ALL on every folder) and a **read-only operator** (READ).
* anyone else: no entry at all, so not even READ.

The *tree ACL* (the ACL of the prefix node, set by ``neti zk secure``) is the one source of who the
operators are: every client reads it after connecting and derives the ACL of the nodes it creates,
so a node gets its ACL in the operation that creates it (``KazooClient.default_acl``) and no client
needs the operators' secrets. An open tree (``world:anyone``) keeps every node open, as the
original Neti had it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from kazoo.security import ACL, OPEN_ACL_UNSAFE, Id, Permissions, make_digest_acl_credential

from neti_core.config import ZkPaths

AGENT_ROLE = "neti-agent"  # the shared identity whose one extra right is CREATE on membership folders
OWNER_PERMS = Permissions.READ | Permissions.WRITE  # no ADMIN: an agent cannot reopen its own node
WORLD = Id("world", "anyone")


@dataclass(frozen=True, slots=True)
class Credential:
    """A digest identity and its secret (read from a file, never from neti.yml)."""

    identity: str
    secret: str

    @property
    def auth_data(self) -> tuple[str, str]:
        """What ``KazooClient(auth_data=[...])`` sends on every (re)connect."""
        return ("digest", f"{self.identity}:{self.secret}")

    @property
    def digest(self) -> str:
        """``identity:base64(sha1(identity:secret))``: what an ACL names; safe to show."""
        return str(make_digest_acl_credential(self.identity, self.secret))


def digest_of(identity: str, secret: str) -> str:
    return str(make_digest_acl_credential(identity, secret))


def identity_of(digest: str) -> str:
    return digest.split(":", 1)[0]


def _entry(digest: str, perms: int) -> ACL:
    return ACL(perms, Id("digest", digest))


@dataclass(frozen=True, slots=True)
class TreeAcl:
    """The principals of one tree, by digest. ``open`` = the original, unauthenticated layout."""

    operators: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    agent_role: str | None = None
    open: bool = False

    @classmethod
    def from_acl(cls, acl: Sequence[ACL]) -> TreeAcl:
        """Read the principals back from the prefix node's ACL (as ``for_prefix`` wrote it)."""
        if any(entry.id == WORLD for entry in acl):
            return cls(open=True)
        operators, readers, agent_role = [], [], None
        for entry in acl:
            if entry.id.scheme != "digest":
                continue
            if identity_of(entry.id.id) == AGENT_ROLE:
                agent_role = entry.id.id
            elif entry.perms & Permissions.ADMIN:
                operators.append(entry.id.id)
            elif entry.perms & Permissions.READ:
                readers.append(entry.id.id)
        return cls(tuple(operators), tuple(readers), agent_role)

    def to_json(self) -> bytes:
        return json.dumps({"operators": self.operators, "readers": self.readers,
                           "agent_role": self.agent_role}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TreeAcl:
        """The principals document; anything that does not parse names nobody (fail closed)."""
        try:
            doc = json.loads(data)
            operators = tuple(str(d) for d in doc["operators"])
            readers = tuple(str(d) for d in doc["readers"])
            agent_role = doc["agent_role"]
        except (ValueError, KeyError, TypeError):
            return cls()
        return cls(operators, readers, str(agent_role) if agent_role else None)

    def _base(self, agent_perms: int) -> list[ACL]:
        acl = [_entry(op, Permissions.ALL) for op in self.operators]
        acl += [_entry(reader, Permissions.READ) for reader in self.readers]
        if self.agent_role:
            acl.append(_entry(self.agent_role, agent_perms))
        return acl

    def for_prefix(self) -> list[ACL]:
        """The prefix node, and every operator-owned node: operators ALL, everyone else READ."""
        return list(OPEN_ACL_UNSAFE) if self.open else self._base(Permissions.READ)

    def for_operator_node(self) -> list[ACL]:
        """control/, audit/ entries, maxchange, interval, reclaim markers."""
        return self.for_prefix()

    def for_membership_folder(self) -> list[ACL]:
        """ip-map, status, ip-to-id, id-to-ip: agents may add children, only operators remove them."""
        if self.open:
            return list(OPEN_ACL_UNSAFE)
        return self._base(Permissions.READ | Permissions.CREATE)

    def for_agent_node(self, owner: str) -> list[ACL]:
        """A node one agent owns (party entry, overlay-map pair, status): ``owner`` is its digest.

        The owner may read and change it; operators may do anything (repair, reclaim); everyone
        holding credentials may read it. Nobody but operators may delete it (DELETE is the parent's).
        """
        if self.open:
            return list(OPEN_ACL_UNSAFE)
        return [_entry(owner, OWNER_PERMS), *self._base(Permissions.READ)]

    def is_operator(self, digest: str) -> bool:
        return digest in self.operators

    def default_acl(self, own_digest: str | None) -> list[ACL] | None:
        """What every create of a client holding ``own_digest`` should carry (None: kazoo's open
        default, for an open tree or a client without credentials)."""
        if self.open or own_digest is None:
            return None
        if self.is_operator(own_digest):
            return self.for_operator_node()
        return self.for_agent_node(own_digest)


def membership_folders(paths: ZkPaths) -> tuple[str, ...]:
    """The folders whose children agents create (their DELETE stays with operators)."""
    return (paths.ip_map, paths.status, paths.ip_to_id, paths.id_to_ip)


def operator_folders(paths: ZkPaths) -> tuple[str, ...]:
    """Folders only operators write; created by ``neti zk secure`` so agents never need to."""
    return (paths.control, paths.control_reject_all, paths.audit, f"{paths.prefix}/reclaim",
            paths.reclaim_gone)
