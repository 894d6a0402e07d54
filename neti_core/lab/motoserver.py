"""moto's EC2 API server on loopback, as a subprocess: the tests' and the lab's AWS account.

Run as a separate process and spoken to over HTTP with real boto3 calls, so nothing in Neti
imports moto; it only needs the ``lab`` extra (``moto[server]``) installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from neti_core.errors import NetiError
from neti_core.lab.zkserver import free_port

LAB_REGION = "us-east-1"


class MotoUnavailable(NetiError):
    """moto's server is not installed or did not come up."""


@dataclass
class MotoServer:
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        script = Path(sys.executable).parent / "moto_server"
        if script.exists():
            return [str(script)]
        found = shutil.which("moto_server")
        if found is None:
            raise MotoUnavailable("moto_server not found: pip install 'neti[lab]'")
        return [found]

    def start(self, timeout: float = 60.0) -> MotoServer:
        if not self.port:
            self.port = free_port(self.host)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [*self._command(), "-H", self.host, "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MotoUnavailable(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise MotoUnavailable(f"moto_server on {self.url} not ready after {timeout:.0f} s")

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client_kwargs(self) -> dict[str, str]:
        """Arguments for ``boto3.client('ec2', **kwargs)`` that reach this server."""
        return {"endpoint_url": self.url, "region_name": LAB_REGION,
                "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
