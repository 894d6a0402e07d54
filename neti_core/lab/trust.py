"""The lab's trust material: a CA, ZooKeeper's TLS certificate, and every principal's secret.

Everything lives in ``<lab dir>/trust`` (keys and secrets mode 0600): the lab runs ZooKeeper
TLS-only with the ACLs of docs/security.md, each host gets its own identity (its instance id) and
secret, and the console gets the operator's. ``neti lab up --insecure`` skips all of it (the open
tree of the original Neti, to rehearse ``neti zk secure``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from kazoo.security import ACL, Permissions

from neti_core.config import ZkPaths
from neti_core.lab.pki import issue, make_ca
from neti_core.lab.zkserver import ServerTls
from neti_core.ops.zksecure import Principals, secure_tree
from neti_core.zkacl import AGENT_ROLE, WORLD, TreeAcl, digest_of
from neti_core.zkclient import make_client

OPERATOR = "neti-operator"
READONLY = "neti-readonly"


class LabTrust:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.secrets = directory / "secrets"
        self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca = make_ca(directory / "pki")
        self.server_tls = ServerTls(issue(self.ca, "zookeeper", server=True).combined, self.ca.cert)

    def secret_file(self, identity: str) -> Path:
        path = self.secrets / f"{identity}.secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        return path

    def digest(self, identity: str) -> str:
        return digest_of(identity, self.secret_file(identity).read_text().strip())

    def principals(self) -> Principals:
        tree = TreeAcl((self.digest(OPERATOR),), (self.digest(READONLY),), self.digest(AGENT_ROLE))
        return Principals(tree, {})

    def agent_settings(self, instance_id: str) -> dict[str, Any]:
        return {"zk_identity": instance_id, "zk_secret_file": str(self.secret_file(instance_id)),
                "zk_shared_agent_secret_file": str(self.secret_file(AGENT_ROLE)),
                "zk_tls_ca_file": str(self.ca.cert)}

    def operator_settings(self, identity: str = OPERATOR) -> dict[str, Any]:
        return {"zk_identity": identity, "zk_secret_file": str(self.secret_file(identity)),
                "zk_tls_ca_file": str(self.ca.cert)}

    def secure(self, hosts: str, paths: ZkPaths) -> None:
        """Lay out the tree with its ACLs before any agent connects."""
        from neti_core.config import parse_config

        config = parse_config({"zk_prefix": paths.prefix, **self.operator_settings()})
        client = make_client(config, hosts, timeout=10)
        client.start(timeout=30)
        try:
            secure_tree(client, paths, self.principals())
            # Outside the prefix a stock ZooKeeper is world-writable: anyone could fill it up.
            client.set_acls("/", [*self.principals().tree.for_operator_node(), ACL(Permissions.READ, WORLD)])
        finally:
            client.stop()
            client.close()
