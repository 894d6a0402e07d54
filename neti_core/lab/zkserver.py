"""Run a real ZooKeeper server (or a 3-node ensemble) from Debian's package, on loopback.

Used by the test fixtures, the benchmarks and the lab, so it lives in the core and needs nothing
from pytest. Each server gets a temporary data dir and free ports; it is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from neti_core.errors import NetiError

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF_DIR = Path("/etc/zookeeper/conf")  # holds the package's log4j/logback configuration
# Netty jars the TLS port needs beyond those zookeeper.jar's manifest names (Debian's libnetty-java).
NETTY_EXTRA_JARS = ("netty-codec.jar", "netty-resolver.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


class ZooKeeperUnavailable(NetiError):
    """The ZooKeeper package or a JRE is missing, or the server did not come up."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0,
                     tls: ssl.SSLContext | None = None) -> str:
    """Send one of ZooKeeper's four-letter admin commands; '' when the server does not answer.
    With ``tls``, over the secure client port (a TLS-only server has no plain port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _check_installed(java: str) -> None:
    if not ZOOKEEPER_JAR.exists():
        raise ZooKeeperUnavailable(f"{ZOOKEEPER_JAR} not found: install Debian's zookeeper package")
    if shutil.which(java) is None:
        raise ZooKeeperUnavailable(f"{java!r} not found: install a JRE (default-jre-headless)")


@dataclass(frozen=True)
class ServerTls:
    """PEM files for a TLS-only ZooKeeper: its key store (key + certificate) and the CA it trusts."""

    keystore: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        return context


@dataclass
class ZooKeeperServer:
    """One ZooKeeper process. ``peers`` makes it a member of an ensemble (see ZooKeeperEnsemble)."""

    workdir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    server_id: int = 0
    peers: Sequence[tuple[int, int, int]] = ()  # (server id, quorum port, election port)
    java: str = "java"
    heap_mb: int = 256
    tick_ms: int = 200
    tls: ServerTls | None = None  # TLS only: secureClientPort, no plain client port
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_workdir: bool = field(default=False, init=False, repr=False)

    @property
    def hosts(self) -> str:
        """The connect string for a client."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _write_config(self) -> Path:
        assert self.workdir is not None
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={data_dir}",
            *self._port_lines(),
            "maxClientCnxns=0",
            "4lw.commands.whitelist=ruok,srvr,mntr,stat,cons",
            "admin.enableServer=false",
            # Session timeouts are clamped to [2, 20] ticks; allow the agents' 10 s default.
            "maxSessionTimeout=60000",
        ]
        if self.peers:
            (data_dir / "myid").write_text(f"{self.server_id}\n")
            lines += [f"server.{sid}={self.host}:{qp}:{ep}" for sid, qp, ep in self.peers]
        config = self.workdir / "zoo.cfg"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _port_lines(self) -> list[str]:
        if self.tls is None:
            return [f"clientPort={self.port}", f"clientPortAddress={self.host}"]
        return [
            f"secureClientPort={self.port}",
            f"secureClientPortAddress={self.host}",
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"ssl.keyStore.location={self.tls.keystore}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={self.tls.ca}",
            "ssl.trustStore.type=PEM",
            "ssl.clientAuth=want",  # a client certificate is optional; identities are digest ACLs
        ]

    def _word(self, word: str) -> str:
        context = self.tls.client_context() if self.tls else None
        return four_letter_word(self.host, self.port, word, tls=context)

    def start(self, timeout: float = 60.0, wait: bool = True) -> ZooKeeperServer:
        """Start the server; with ``wait``, return once it answers ``ruok`` (and serves, if clustered)."""
        _check_installed(self.java)
        if self.process and self.process.poll() is None:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="neti-zk-"))
            self._own_workdir = True
        if not self.port:
            self.port = free_port(self.host)
        config = self._write_config()
        log = open(self.workdir / "zookeeper.log", "ab")  # noqa: SIM115 - owned by the child
        classpath = ":".join([str(ZOOKEEPER_CONF_DIR), str(ZOOKEEPER_JAR),
                              *(str(ZOOKEEPER_JAR.parent / jar) for jar in NETTY_EXTRA_JARS)])
        self.process = subprocess.Popen(
            [self.java, f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dzookeeper.jmx.log4j.disable=true", "-cp", classpath, MAIN_CLASS, str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir, start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def is_serving(self) -> bool:
        """True once the server answers and, in an ensemble, has joined a quorum."""
        if self._word("ruok") != "imok":
            return False
        return "Mode:" in self._word("srvr")

    def mode(self) -> str:
        """standalone, leader or follower ('' when not serving)."""
        for line in self._word("srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ZooKeeperUnavailable(f"ZooKeeper exited with {self.process.returncode}; "
                                           f"see {self.workdir}/zookeeper.log")
            if self.is_serving():
                return
            time.sleep(0.1)
        raise ZooKeeperUnavailable(f"ZooKeeper on {self.hosts} not ready after {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop by PID: SIGTERM, then SIGKILL if it lingers. Keeps the data dir (restart resumes)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        """Stop and remove the data dir this object created."""
        self.stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


@dataclass
class ZooKeeperEnsemble:
    """Three (or ``size``) servers on loopback forming one quorum."""

    size: int = 3
    workdir: Path | None = None
    tls: ServerTls | None = None  # every member TLS-only on its client port (quorum ports stay plain)
    servers: list[ZooKeeperServer] = field(default_factory=list, init=False)
    _own_workdir: bool = field(default=False, init=False, repr=False)

    @property
    def hosts(self) -> str:
        return ",".join(server.hosts for server in self.servers)

    def start(self, timeout: float = 90.0) -> ZooKeeperEnsemble:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="neti-zk-ensemble-"))
            self._own_workdir = True
        peers = [(sid, free_port(), free_port()) for sid in range(1, self.size + 1)]
        self.servers = [
            ZooKeeperServer(workdir=self.workdir / f"server{sid}", port=free_port(),
                            server_id=sid, peers=peers, tls=self.tls)
            for sid, _, _ in peers
        ]
        for server in self.servers:
            server.start(wait=False)
        deadline = time.monotonic() + timeout
        for server in self.servers:
            server.wait_ready(max(1.0, deadline - time.monotonic()))
        return self

    def leader(self) -> ZooKeeperServer | None:
        return next((s for s in self.servers if s.mode() == "leader"), None)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


@contextmanager
def zookeeper_hosts(existing: str | None, heap_mb: int = 512) -> Iterator[str]:
    """The connect string of ``existing`` (``--zk HOST:PORT``), or of a server started for the
    duration of the block: how the benchmarks and tools take "use mine, or bring your own"."""
    if existing:
        yield existing
        return
    with ZooKeeperServer(heap_mb=heap_mb) as server:
        yield server.hosts
