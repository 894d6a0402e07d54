"""The lab's ZooKeeper, one server or an ensemble, and its drills: stop/start one member or all,
kill the leader (kill -9), a rolling restart (followers first, the leader last, each back in the
quorum before the next goes), as an operator upgrading ZooKeeper would do it."""

from __future__ import annotations

import time
from pathlib import Path

from neti_core.lab.zkserver import ServerTls, ZooKeeperEnsemble, ZooKeeperServer, ZooKeeperUnavailable


class LabZooKeeper:
    def __init__(self, workdir: Path, ensemble: int = 1, heap_mb: int = 384,
                 tls: ServerTls | None = None) -> None:
        self.ensemble = ZooKeeperEnsemble(size=ensemble, workdir=workdir, tls=tls) if ensemble > 1 else None
        self.single = None if self.ensemble else ZooKeeperServer(workdir=workdir, heap_mb=heap_mb, tls=tls)

    @property
    def servers(self) -> list[ZooKeeperServer]:
        return self.ensemble.servers if self.ensemble else [self.single]  # type: ignore[list-item]

    @property
    def hosts(self) -> str:
        return ",".join(server.hosts for server in self.servers)

    @property
    def targets(self) -> list[tuple[str, int]]:
        return [(server.host, server.port) for server in self.servers]

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers if server.pid]

    def start(self) -> None:
        if self.ensemble is not None:
            self.ensemble.start()
        else:
            assert self.single is not None
            self.single.start()

    def _chosen(self, member: int | None) -> list[ZooKeeperServer]:
        if member is None:
            return self.servers
        if not 1 <= member <= len(self.servers):
            raise ValueError(f"no ZooKeeper member {member} (members 1..{len(self.servers)})")
        return [self.servers[member - 1]]

    def stop(self, member: int | None = None) -> str:
        chosen = self._chosen(member)
        for server in chosen:
            server.stop()
        return self._said("stopped", chosen)

    def start_members(self, member: int | None = None) -> str:
        chosen = self._chosen(member)
        for server in chosen:
            server.start(wait=False)
        for server in chosen:
            server.wait_ready(90)
        return self._said("running", chosen)

    def kill_leader(self) -> str:
        return self.kill_role("leader")

    def kill_role(self, role: str) -> str:
        """kill -9 the leader, or one follower (the first serving as one), as a crash would."""
        if self.ensemble is None:
            raise ValueError(f"kill-{role} needs an ensemble (neti lab up --ensemble 3)")
        victim = next((s for s in self.servers if s.mode() == role), None)
        if victim is None:
            raise ZooKeeperUnavailable(f"no {role} right now (no quorum)")
        index = self.servers.index(victim) + 1
        victim.kill()
        return f"ZooKeeper {role} (member {index}, {victim.hosts}) killed with SIGKILL; " \
               f"`neti lab zk start --member {index}` brings it back"

    def restart_rolling(self) -> str:
        """Followers first, leader last; each must serve again before the next stops."""
        order = sorted(self.servers, key=lambda s: s.mode() == "leader")
        began = time.monotonic()
        for server in order:
            server.stop()
            server.start(wait=False)
            server.wait_ready(90)
        return f"rolling restart of {len(order)} members done in {time.monotonic() - began:.1f} s " \
               f"(leader last); leader now member {self._leader_index()}"

    def _leader_index(self) -> int | None:
        return next((i + 1 for i, s in enumerate(self.servers) if s.mode() == "leader"), None)

    def _said(self, verb: str, chosen: list[ZooKeeperServer]) -> str:
        if len(self.servers) == 1:
            return f"ZooKeeper {verb}"
        which = ", ".join(str(self.servers.index(s) + 1) for s in chosen)
        return f"ZooKeeper member(s) {which} {verb}"

    def cleanup(self) -> None:
        for server in self.servers:
            server.stop()
