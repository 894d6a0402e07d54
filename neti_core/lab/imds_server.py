"""An IMDSv2 endpoint serving one simulated instance's identity: for the tests and the lab.

It speaks the same protocol as the real service for the paths Neti reads: a PUT for a session
token, then GETs that must carry it (401 without). Run it in a thread, or as
``python -m neti_core.lab.imds_server --port P --identity '{...}'`` (e.g. inside a lab namespace).
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TOKEN_HEADER = "x-aws-ec2-metadata-token"
_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"


def metadata_tree(instance_id: str, private_ip: str, public_ip: str, mac: str,
                  vpc_id: str | None = None) -> dict[str, str]:
    """The meta-data paths (relative to latest/meta-data/) an instance of this shape would serve."""
    tree = {"instance-id": instance_id, "local-ipv4": private_ip, "mac": mac,
            "network/interfaces/macs/": f"{mac}/"}
    if vpc_id:
        tree[f"network/interfaces/macs/{mac}/vpc-id"] = vpc_id
        tree[f"network/interfaces/macs/{mac}/ipv4-associations/"] = public_ip
        tree[f"network/interfaces/macs/{mac}/ipv4-associations/{public_ip}"] = private_ip
    tree["public-ipv4"] = public_ip
    return tree


class _Handler(BaseHTTPRequestHandler):
    server: ImdsServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the agent's own logs say what matters."""

    def _reply(self, status: HTTPStatus, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _throttled(self) -> bool:
        """EC2's service throttles under load (HTTP 429); the lab can play that for a while."""
        if time.monotonic() < self.server.throttle_until:
            self.server.throttled += 1
            self._reply(HTTPStatus.TOO_MANY_REQUESTS)
            return True
        return False

    def do_PUT(self) -> None:
        if self._throttled():
            return
        if self.path != "/latest/api/token" or not self.headers.get(_TTL_HEADER):
            self._reply(HTTPStatus.BAD_REQUEST)
            return
        token = secrets.token_urlsafe(24)
        self.server.tokens.add(token)
        self._reply(HTTPStatus.OK, token)

    def do_GET(self) -> None:
        if self._throttled():
            return
        if self.headers.get(_TOKEN_HEADER) not in self.server.tokens:
            self._reply(HTTPStatus.UNAUTHORIZED)
            return
        prefix = "/latest/meta-data/"
        value = self.server.tree.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if value is None:
            self._reply(HTTPStatus.NOT_FOUND)
        else:
            self._reply(HTTPStatus.OK, value)


class ImdsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tree: dict[str, str], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.tree = tree
        self.tokens: set[str] = set()
        self.throttle_until = 0.0  # monotonic; until then every request gets 429
        self.throttled = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ImdsServer:
        self._thread = threading.Thread(target=self.serve_forever, name="imds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one instance's metadata (IMDSv2).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--identity", required=True,
                        help='JSON: {"instance_id", "private_ip", "public_ip", "mac", "vpc_id"?}')
    args = parser.parse_args(argv)
    server = ImdsServer(metadata_tree(**json.loads(args.identity)), args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
