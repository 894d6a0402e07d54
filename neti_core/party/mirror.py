"""This host's party entry, written twice: in ``ip-map`` (the original) and in one mirror bucket.

docs/membership.md has the design. Both ephemeral nodes carry the same name
(``<uuid>-<public>|<private>|<overlay>|<0|1>``) and are created in one ZooKeeper transaction, so a
reader never sees one without the other from this host, and ``ip-map``'s child version moves in
step with the mirror's (the invariant :mod:`neti_core.party.view` checks to find entries written
only by older agents). The bucket is a hash of the identifier, so it never depends on who reads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
import zlib
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoAuthError, NodeExistsError, NoNodeError, RolledBackError
from kazoo.protocol.states import KazooState

from neti_core.config import ZkPaths
from neti_core.members import Member, format_party_entry

log = logging.getLogger(__name__)

# Part of the tree's format: every agent must agree, so changing it means a new mirror root.
# 128 buckets keep one bucket at ~80 entries (~7 KB of names) at 10,000 members.
BUCKETS = 128


def bucket_name(index: int) -> str:
    return f"b{index:03d}"


ALL_BUCKETS: tuple[str, ...] = tuple(bucket_name(i) for i in range(BUCKETS))


def bucket_of(identifier: str) -> str:
    """The bucket of a member: crc32 of its identifier, stable across hosts and versions."""
    return bucket_name(zlib.crc32(identifier.encode()) % BUCKETS)


def ensure_buckets(client: KazooClient, paths: ZkPaths) -> bool:
    """Make sure the mirror's persistent bucket nodes exist; False if they are missing and not ours
    to create.

    In an open tree the first agent of this version creates them (pipelined, idempotent). In a
    secured tree ``neti zk secure`` creates them with the membership folders' ACL (agents may add
    children, only operators remove them) and ``<prefix>/members`` is operators-only, so no host can
    add, remove or re-ACL a bucket (docs/security.md): an agent there gets NoAuth and returns False.
    """
    if client.exists(f"{paths.members}/{ALL_BUCKETS[-1]}") is not None:
        return True
    try:
        client.ensure_path(paths.members)
        pending = [client.create_async(f"{paths.members}/{name}") for name in ALL_BUCKETS]
        for result in pending:
            with contextlib.suppress(NodeExistsError):  # another agent made it first
                result.get(timeout=30)
    except NoAuthError:
        return False
    return True


def add_owned_ephemeral(transaction: object, path: str) -> None:
    """The one place this module creates a host-owned node. It carries the client's
    ``default_acl`` (``zkclient.install_acl``): this host's identity READ+WRITE, operators ALL,
    everyone else with credentials READ; in a transaction too (kazoo's ``TransactionRequest``)."""
    transaction.create(path, b"", ephemeral=True)  # type: ignore[attr-defined]


class MirroredParty:
    """This host's entry in ``ip-map`` and in its mirror bucket, rejoined after a session loss."""

    def __init__(self, client: KazooClient, paths: ZkPaths, member: Member,
                 on_rejoin: Callable[[], None] | None = None) -> None:
        self.client = client
        self.paths = paths
        self.member = member
        self.node_name = format_party_entry(uuid.uuid4().hex, member)
        self.party_path = f"{paths.ip_map}/{self.node_name}"
        self.mirror_path = f"{paths.members}/{bucket_of(member.identifier())}/{self.node_name}"
        self._on_rejoin = on_rejoin
        self._lost = False
        self._active = False
        self.mirrored = True  # False: the buckets are missing and not ours to create (ip-map only)
        self._lock = threading.Lock()
        client.add_listener(self._state_changed)

    @property
    def node_path(self) -> str:
        return self.party_path

    def join(self) -> None:
        with self._lock:
            self._active = True
            self.client.ensure_path(self.paths.ip_map)
            self.mirrored = ensure_buckets(self.client, self.paths)
            if not self.mirrored:
                log.warning("%s has no buckets and this agent may not create them: joining ip-map "
                            "only (every reader then pays a whole-party read per change; run "
                            "`neti zk secure --apply` to create them)", self.paths.members)
            self._create_missing()

    def restore(self, watch: Callable[[object], None] | None = None) -> bool:
        """Self-heal: recreate whichever of the two entries someone deleted under a live session;
        True if one was. ``watch`` is set on both, so the next deletion wakes the caller at once."""
        with self._lock:
            if not self._active:
                return False
            if not self.mirrored:  # an operator may have (re)created our bucket since we joined
                self.mirrored = self.client.exists(self._bucket_path) is not None
            restored = self._create_missing()
            if watch is not None:
                for path in self._own_paths():
                    self.client.exists(path, watch=watch)
            return restored

    def leave(self) -> None:
        with self._lock:
            self._active = False
            self.client.remove_listener(self._state_changed)
            transaction = self.client.transaction()
            for path in reversed(self._own_paths()):
                if self.client.exists(path) is not None:
                    transaction.delete(path)
            # In a secured tree only operators may delete children (DELETE is the parent's): the
            # transaction then fails as a whole (NoAuth in its results, not raised), and closing
            # the session removes both ephemeral entries anyway.
            transaction.commit()

    @property
    def _bucket_path(self) -> str:
        return self.mirror_path.rsplit("/", 1)[0]

    def _own_paths(self) -> tuple[str, ...]:
        return (self.party_path, self.mirror_path) if self.mirrored else (self.party_path,)

    def _create_missing(self) -> bool:
        missing = [p for p in self._own_paths() if self.client.exists(p) is None]
        if not missing:
            return False
        transaction = self.client.transaction()
        for path in missing:
            add_owned_ephemeral(transaction, path)
        results = transaction.commit()
        failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        if failed and self.mirror_path in missing and isinstance(failed[0], NoNodeError) \
                and self.client.exists(self._bucket_path) is None:
            # Our bucket was deleted (an operator's slip): still be a member, through ip-map alone,
            # as an older agent is; self-heal adds the twin once the bucket is back.
            log.warning("%s is missing: joining ip-map only until it is back", self._bucket_path)
            self.mirrored = False
            return self._create_missing()
        if failed:
            raise failed[0]
        if len(missing) == 1:
            log.warning("recreated the missing party entry %s", missing[0])
        return True

    def _state_changed(self, state: KazooState) -> None:
        # Runs on kazoo's event thread: never block here, hand the rejoin to another thread.
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.CONNECTED and self._lost and self._active:
            self._lost = False
            self.client.handler.spawn(self._rejoin)

    def _rejoin(self) -> None:
        try:
            with self._lock:
                if not self._active:
                    return
                self._create_missing()
            log.info("rejoined the party as %s after session loss", self.member.identifier())
            if self._on_rejoin is not None:
                self._on_rejoin()
        except (KazooException, OSError):  # must not kill kazoo's worker; the next CONNECTED retries
            log.exception("rejoining the party failed")
            self._lost = True
