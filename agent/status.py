"""Publishing ``status/<instance_id>``: ephemeral, written when it changes, never as a heartbeat.

Writes wait a bounded time: a sync thread stuck on a partitioned ZooKeeper could not roll back a
dead-man switch in time.
"""

from __future__ import annotations

import logging

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoAuthError, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from neti_core.config import ZkPaths
from neti_core.schema import AgentStatus

log = logging.getLogger(__name__)
WRITE_TIMEOUT_SECONDS = 2.0


class StatusPublisher:
    def __init__(self, client: KazooClient, paths: ZkPaths, instance_id: str) -> None:
        self.client = client
        self.path = f"{paths.status}/{instance_id}"
        self._written: bytes | None = None
        self._session: int | None = None

    def invalidate(self) -> None:
        """After a new session: the ephemeral node is gone, write it again."""
        self._written = None

    def verify(self, watch: object = None) -> bool:
        """True when the node no longer holds what this agent last wrote (it will be rewritten)."""
        if self._written is None:
            return False
        try:
            data, _ = self.client.get_async(self.path, watch=watch).get(timeout=WRITE_TIMEOUT_SECONDS)
        except NoNodeError:
            self.client.exists(self.path, watch=watch)
            data = None
        except (KazooException, KazooTimeoutError, OSError) as exc:
            log.debug("status check failed: %s", exc)
            return False
        if data == self._written:
            return False
        self._written = None
        return True

    def publish(self, status: AgentStatus, force: bool = False) -> bool:
        """Write if changed; True when ZooKeeper holds exactly this status afterwards."""
        data = status.to_json()
        session = self.client.client_id[0] if self.client.client_id else None
        if not force and data == self._written and session == self._session:
            return True
        try:
            self._write(data)
        except (KazooException, KazooTimeoutError, OSError) as exc:
            log.debug("status write failed: %s", exc)
            self._written = None
            return False
        self._written, self._session = data, session
        return True

    def _write(self, data: bytes) -> None:
        try:
            stat = self.client.exists_async(self.path).get(timeout=WRITE_TIMEOUT_SECONDS)
            own = self.client.client_id[0]
            if stat is not None and stat.ephemeralOwner != own:
                # Left by this host's previous session (restart, kill -9): it would vanish later.
                try:
                    self.client.delete_async(self.path).get(timeout=WRITE_TIMEOUT_SECONDS)
                    stat = None
                except NoAuthError:
                    # A secured tree: only operators delete (docs/security.md), but the node is this
                    # host's to write. Written over, the console sees this run's status at once;
                    # when the old session expires the node goes, and the next sync's check
                    # (verify) writes it again as this session's.
                    pass
            if stat is None:
                self.client.ensure_path(self.path.rsplit("/", 1)[0])
                self.client.create_async(self.path, data, ephemeral=True).get(timeout=WRITE_TIMEOUT_SECONDS)
            else:
                self.client.set_async(self.path, data).get(timeout=WRITE_TIMEOUT_SECONDS)
        except (NodeExistsError, NoNodeError):
            self.client.set_async(self.path, data).get(timeout=WRITE_TIMEOUT_SECONDS)
