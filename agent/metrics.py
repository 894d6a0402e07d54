"""The agent's operations surface: Prometheus ``/metrics`` and ``/healthz`` on localhost.

A registry per agent (not prometheus-client's global one), so several agents can share one
process (the convergence benchmark) without their series colliding.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sync_seconds = Histogram("neti_sync_duration_seconds", "Time of one sync (read, compute, apply)",
                                      registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                           2.5, 5, 10))
        self.syncs = Counter("neti_syncs", "Syncs run", registry=r)
        self.applies = Counter("neti_applies", "Syncs that changed the kernel's rules", registry=r)
        self.errors = Counter("neti_sync_errors", "Syncs that failed (rules left as they were)",
                              registry=r)
        self.members = Gauge("neti_members", "Members programmed into the rules", registry=r)
        self.guard_trips = Counter("neti_guard_trips", "Times the mass-change guard held removals",
                                   registry=r)
        self.drift_repairs = Counter("neti_drift_repairs", "Rule drift found and repaired", registry=r)
        self.self_heals = Counter("neti_self_heals", "Own nodes (party entry, overlay pair, status) "
                                  "restored after another client deleted or changed them", registry=r)
        self.malformed = Gauge("neti_malformed_entries", "Party entries skipped as malformed",
                               registry=r)
        self.last_sync = Gauge("neti_last_sync_timestamp_seconds", "Unix time of the last good sync",
                               registry=r)
        self.rollbacks = Counter("neti_reject_all_rollbacks", "reject_all rolled back by the dead-man",
                                 registry=r)
        self.membership_version = Gauge(
            "neti_membership_version_applied", "ip-map children version of the membership in the rules "
            "(an agent behind the fleet's highest is lagging)", registry=r)
        self.guard_blocked = Gauge("neti_guard_blocked_removals",
                                   "Removals the mass-change guard is holding now (0: not tripped)",
                                   registry=r)
        self.zk_connected = Gauge("neti_zookeeper_connected", "1 while the ZooKeeper session is usable",
                                  registry=r)


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the journal."""

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = generate_latest(self.server.metrics.registry)
            self._send(HTTPStatus.OK, body, CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            healthy, detail = self.server.health()
            body = json.dumps({"healthy": healthy, **detail}, sort_keys=True).encode()
            status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, body, "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, port: int, metrics: AgentMetrics,
                 health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        super().__init__((address, port), _Handler)
        self.metrics = metrics
        self.health = health

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> HealthServer:
        threading.Thread(target=self.serve_forever, name="neti-health", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
