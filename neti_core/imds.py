"""This host's identity from the EC2 instance metadata service, with IMDSv2 session tokens.

Built on botocore's IMDSFetcher (token handling, retries, timeouts) rather than hand-written HTTP.
IMDSv1 is refused: an agent that programs the firewall must not be steerable by a plain GET from
anything on the host that can spoof the metadata endpoint without a token.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from ipaddress import IPv4Address

from botocore.exceptions import BotoCoreError
from botocore.utils import IMDSFetcher

from neti_core.errors import MalformedEntryError, NetiError
from neti_core.members import Side, parse_ipv4, validate_instance_id

_MAC = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
log = logging.getLogger(__name__)


class MetadataError(NetiError):
    """The metadata service is unreachable, refuses a token, or answers something malformed."""

    @property
    def transient(self) -> bool:
        """Waiting may fix it (unreachable, slow, throttled, 5xx): the agent waits; else it exits."""
        return isinstance(self, MetadataUnavailable)


class MetadataUnavailable(MetadataError):
    """The service did not answer (yet): worth asking again, unlike an answer that does not parse."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this host is, as the agent registers it."""

    instance_id: str
    private_ip: IPv4Address
    public_ip: IPv4Address
    mac: str
    side: Side
    vpc_id: str | None = None


class _Fetcher(IMDSFetcher):  # type: ignore[misc]  # botocore is untyped (see pyproject)
    def token(self) -> str:
        token = self._fetch_metadata_token()
        if not token:
            raise MetadataUnavailable(f"{self.get_base_url()} gave no IMDSv2 token")
        return str(token)

    def get(self, path: str, token: str, *, missing_ok: bool = False) -> str | None:
        response = self._get_request(f"latest/meta-data/{path}", retry_func=_retry_5xx, token=token)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            # 429 (throttled), 5xx and 401 (the token expired under us) pass; a 404 is a fact.
            kind = MetadataError if response.status_code == 404 else MetadataUnavailable
            raise kind(f"metadata {path}: HTTP {response.status_code}")
        return str(response.text).strip()


def _retry_5xx(response: object) -> bool:
    return getattr(response, "status_code", 500) >= 500


def fetch_identity(base_url: str = "http://169.254.169.254", timeout: float = 2.0,
                   attempts: int = 3) -> Identity:
    """Read instance id, addresses, MAC and side; VPC hosts' public IP from ipv4-associations."""
    fetcher = _Fetcher(timeout=timeout, num_attempts=attempts, base_url=base_url,
                       config={"ec2_metadata_v1_disabled": True})
    try:
        token = fetcher.token()
        instance_id = validate_instance_id(_required(fetcher.get("instance-id", token), "instance-id"))
        private_ip = parse_ipv4(_required(fetcher.get("local-ipv4", token), "local-ipv4"))
        mac = _required(fetcher.get("mac", token), "mac").lower()
        if not _is_mac(mac):
            raise MetadataError(f"metadata mac: {mac!r} is not a MAC address")
        vpc_id = fetcher.get(f"network/interfaces/macs/{mac}/vpc-id", token, missing_ok=True)
        if vpc_id:
            associations = fetcher.get(f"network/interfaces/macs/{mac}/ipv4-associations/", token,
                                       missing_ok=True)
            publics = [line.strip().rstrip("/") for line in (associations or "").splitlines()
                       if line.strip()]
            if not publics:
                raise MetadataError("VPC instance has no public address in ipv4-associations/ "
                                    "(launch it with a public IP: Neti needs one)")
            public_ip = parse_ipv4(publics[0])
            side = Side.VPC
        else:
            public_ip = parse_ipv4(_required(fetcher.get("public-ipv4", token, missing_ok=True),
                                             "public-ipv4"))
            side = Side.EC2
    except MalformedEntryError as exc:
        raise MetadataError(f"instance metadata from {base_url}: {exc}") from None
    except (BotoCoreError, _Fetcher._RETRIES_EXCEEDED_ERROR_CLS) as exc:
        raise MetadataUnavailable(f"instance metadata from {base_url}: "
                                  f"{exc or f'no answer after {attempts} attempts'}") from None
    return Identity(instance_id, private_ip, public_ip, mac, side, vpc_id or None)


def _required(value: str | None, what: str) -> str:
    if not value:
        raise MetadataError(f"metadata {what} is missing")
    return value


def _is_mac(text: str) -> bool:
    return re.fullmatch(_MAC, text) is not None
