"""The one place that builds a KazooClient: credentials and TLS from neti.yml, for every caller.

The agent, its dry run, the console's feed, the ``neti`` ops commands, the lab and the benchmarks
all connect through :func:`make_client`, so none of them can forget the auth data or the CA. After
``start()``, :func:`install_acl` reads the tree ACL and sets ``client.default_acl``, so every node
this client creates (plain creates, multi-op transactions, kazoo's party recipe, ``makepath``)
carries its ACL in the operation that creates it.
"""

from __future__ import annotations

import logging
import select
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.handlers.utils import fileobj_to_fd

from neti_core.config import NetiConfig, ZkPaths
from neti_core.errors import ConfigError, NetiError
from neti_core.zkacl import AGENT_ROLE, Credential, TreeAcl

log = logging.getLogger(__name__)
UNAUTHENTICATED_NOTE = ("the ZooKeeper control plane is unauthenticated (no zk_identity in neti.yml): "
                        "anyone who reaches ZooKeeper can change this fleet's firewalls")


class PlainSelectHandler(SequentialThreadingHandler):  # type: ignore[misc]  # kazoo is untyped
    """kazoo's threading handler, waiting on its sockets with one ``select(2)``.

    kazoo's own ``select`` builds and closes an epoll selector on every call (so that descriptors
    above 1024 work), and its connection thread calls it up to three times per reply. Measured
    with 20,000 pipelined reads on the project's 2-core machine: 3.0-3.5 s with kazoo's, 2.1 s with
    this. Descriptors beyond ``select``'s limit still go through kazoo's selector.
    """

    def select(self, rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> Any:
        if all(fileobj_to_fd(obj) < _SELECT_FD_LIMIT for obj in (*rlist, *wlist, *xlist)):
            return select.select(rlist, wlist, xlist, timeout)
        return super().select(rlist, wlist, xlist, timeout)


_SELECT_FD_LIMIT = 1024  # FD_SETSIZE on Linux


class CredentialsRefused(NetiError):
    """ZooKeeper did not accept who we say we are (a wrong secret, or a tree not yet secured)."""


def read_secret(path: Path, key: str) -> str:
    """The secret in ``path``; a file others may read is refused with a line that names it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(key, f"{path} is readable by group/others (mode {stat.S_IMODE(mode):04o}); "
                                   "chmod 600 it")
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    if not secret or "\n" in secret:
        raise ConfigError(key, f"{path} must hold exactly one non-empty line (the secret)")
    return secret


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a process is: its own identity and, for agents, the shared agent role."""

    own: Credential | None = None
    shared_agent: Credential | None = None

    @property
    def auth_data(self) -> list[tuple[str, str]]:
        return [c.auth_data for c in (self.own, self.shared_agent) if c is not None]

    @classmethod
    def from_config(cls, config: NetiConfig) -> Credentials:
        if config.zk_identity is None or config.zk_secret_file is None:
            return cls()
        own = Credential(config.zk_identity, read_secret(config.zk_secret_file, "zk_secret_file"))
        shared = None
        if config.zk_shared_agent_secret_file is not None:
            shared = Credential(AGENT_ROLE, read_secret(config.zk_shared_agent_secret_file,
                                                        "zk_shared_agent_secret_file"))
        return cls(own, shared)


def tls_options(config: NetiConfig) -> dict[str, Any]:
    """kazoo's TLS arguments: on when a CA is configured; a client certificate is optional."""
    if config.zk_tls_ca_file is None:
        return {}
    for key in ("zk_tls_ca_file", "zk_tls_cert_file", "zk_tls_key_file"):
        path = getattr(config, key)
        if path is not None and not Path(path).is_file():
            raise ConfigError(key, f"{path} does not exist")
    options: dict[str, Any] = {"use_ssl": True, "verify_certs": True, "ca": str(config.zk_tls_ca_file)}
    if config.zk_tls_cert_file is not None:
        options |= {"certfile": str(config.zk_tls_cert_file), "keyfile": str(config.zk_tls_key_file)}
    return options


class BoundedConnectHandler(PlainSelectHandler):
    """kazoo gives a TLS handshake the whole session timeout (its Connect request gets only
    session timeout / members): one hung ensemble member, which still accepts TCP in the kernel,
    then eats the session before the client tries the next member, and every agent on it loses
    its session and its ephemeral nodes. Bounded to half a member's share, failing over from a
    hung member takes two attempts at most within the session (measured: tests/test_zk_failover.py)."""

    def __init__(self, connect_seconds: float) -> None:
        super().__init__()
        self.connect_seconds = connect_seconds

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        kwargs["timeout"] = self.connect_seconds if timeout is None else min(timeout, self.connect_seconds)
        return super().create_connection(*args, **kwargs)


def make_client(config: NetiConfig, hosts: str, **kazoo_options: Any) -> KazooClient:
    """A KazooClient (not started) for ``hosts`` carrying this config's credentials and TLS.

    Raises ConfigError (one line) for an unreadable or world-readable secret file or a missing CA.
    """
    credentials = Credentials.from_config(config)
    tls = tls_options(config)
    members = len(hosts.split("/", 1)[0].split(","))
    if tls and members > 1 and "handler" not in kazoo_options:
        kazoo_options["handler"] = BoundedConnectHandler(
            float(kazoo_options.get("timeout", 10.0)) / members / 2)
    kazoo_options.setdefault("handler", PlainSelectHandler())
    client = KazooClient(hosts=hosts, auth_data=credentials.auth_data or None, **tls, **kazoo_options)
    client.neti_credentials = credentials  # read by install_acl
    return client


def is_authenticated(config: NetiConfig) -> bool:
    return config.zk_identity is not None


def read_tree_acl(client: KazooClient, paths: ZkPaths) -> TreeAcl:
    """The principals of the tree; an absent prefix is an open (fresh, original-layout) tree."""
    try:
        acl, _ = client.get_acls(paths.prefix)
    except NoNodeError:
        return TreeAcl(open=True)
    if TreeAcl.from_acl(acl).open:
        return TreeAcl(open=True)
    # ZooKeeper 3.8 shows digests as "name:x" to clients without ADMIN, so the principals are
    # published in a node every principal may read (digests, never secrets).
    data, _ = client.get(principals_path(paths))
    return TreeAcl.from_json(data)


def install_acl(client: KazooClient, paths: ZkPaths) -> TreeAcl:
    """Read the tree ACL and make it this client's default for every node it creates.

    Raises CredentialsRefused when the tree is secured but does not know us: the one clear line a
    wrong secret deserves (ZooKeeper's digest auth itself accepts any secret and just names a
    different identity, so the refusal only shows when reading the tree).
    """
    credentials: Credentials = getattr(client, "neti_credentials", Credentials())
    try:
        tree = read_tree_acl(client, paths)
    except NoAuthError:
        who = credentials.own.identity if credentials.own else "an unauthenticated client"
        raise CredentialsRefused(f"ZooKeeper refused {who} reading {paths.prefix}: the tree is secured "
                                 "and these credentials are not among its principals "
                                 "(check zk_identity / zk_secret_file)") from None
    own = credentials.own.digest if credentials.own else None
    client.default_acl = tree.default_acl(own)
    return tree


def verify_agent_identity(client: KazooClient, paths: ZkPaths, instance_id: str, tree: TreeAcl) -> None:
    """An agent whose overlay pair already exists must hold the identity that owns it: otherwise its
    secret is wrong (or rotated without re-owning its nodes) and it could not keep its status."""
    credentials: Credentials = getattr(client, "neti_credentials", Credentials())
    if tree.open or credentials.own is None:
        return
    if credentials.shared_agent is not None and tree.agent_role != credentials.shared_agent.digest:
        raise CredentialsRefused(f"ZooKeeper does not know the shared agent secret of {instance_id} "
                                 "(check zk_shared_agent_secret_file)")
    path = f"{paths.id_to_ip}/{instance_id}"
    stat = client.exists(path)
    if stat is None:
        return
    # A write that cannot commit (the check fails) tells whether we may write our own node,
    # without changing it: NoAuth on the first op means another identity owns it.
    transaction = client.transaction()
    transaction.set_data(path, client.get(path)[0], version=stat.version)
    transaction.check(path, version=stat.version + 1_000_000)
    if isinstance(transaction.commit()[0], NoAuthError):
        raise CredentialsRefused(f"the secret of {instance_id} does not match the one that owns its "
                                 f"nodes in ZooKeeper (check zk_secret_file)")


def principals_path(paths: ZkPaths) -> str:
    return f"{paths.prefix}/principals"

