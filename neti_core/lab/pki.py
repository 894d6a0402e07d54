"""A throwaway certificate authority for the lab and the tests, with the ``openssl`` command line.

Makes a CA, a server certificate for ZooKeeper (loopback names) and client certificates, as PEM
files with private keys mode 0600. ZooKeeper 3.8 reads PEM key and trust stores directly
(``ssl.keyStore.type=PEM``): its key store is the private key and the certificate in one file.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from neti_core.errors import NetiError

DAYS = "30"


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path

    @property
    def combined(self) -> Path:
        """Key then certificate in one PEM: what ZooKeeper's PEM key store reads."""
        return self.cert.with_suffix(".keystore.pem")


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)
    except FileNotFoundError:
        raise NetiError("'openssl' not found: install Debian's openssl package") from None
    except subprocess.CalledProcessError as exc:
        raise NetiError(f"openssl {args[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from None


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path),
             cwd=path.parent)
    os.chmod(path, 0o600)


def make_ca(directory: Path) -> CertPair:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertPair(directory / "ca.pem", directory / "ca.key")
    if not ca.cert.exists():
        _new_key(ca.key)
        _openssl("req", "-x509", "-new", "-key", str(ca.key), "-out", str(ca.cert), "-days", DAYS,
                 "-subj", "/CN=neti lab CA", cwd=directory)
    return ca


def issue(ca: CertPair, name: str, *, server: bool = False) -> CertPair:
    """A certificate for ``name`` signed by ``ca`` (servers get loopback subject alt names)."""
    directory = ca.cert.parent
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key")
    if pair.cert.exists():
        return pair
    _new_key(pair.key)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", f"/CN={name}", cwd=directory)
    ext = directory / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    sans = "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else ""
    ext.write_text(f"extendedKeyUsage={usage}\n{sans}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(pair.cert), "-days", DAYS, "-extfile", str(ext), cwd=directory)
    csr.unlink()
    ext.unlink()
    pair.combined.write_bytes(pair.key.read_bytes() + pair.cert.read_bytes())
    os.chmod(pair.combined, 0o600)
    return pair
