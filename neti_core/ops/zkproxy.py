"""``neti zk-proxy render``: the nat rules of an EC2 ZooKeeper proxy host (the original cookbook's
``zkneti`` recipe), for the operator to install.

EC2-side agents cannot reach the VPC ensemble's private addresses, so each EC2 proxy host forwards
its ZooKeeper port to one ensemble member's *public* address: DNAT in PREROUTING, plus MASQUERADE
(or SNAT to a given address) in POSTROUTING so the member's replies come back through the proxy,
which un-NATs them for the client. Rendering is pure text from validated addresses; the output is
a whole ``*nat`` table for ``iptables-restore``, so installing it twice leaves the same rules (the
proxies run no Neti agent and nothing else that uses nat; ``iptables-restore`` without
``--noflush`` replaces only the tables present in its input, so the filter table is left alone).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from ipaddress import IPv4Address

from neti_core.cliutil import fail, load_config_or_exit
from neti_core.errors import MalformedEntryError
from neti_core.members import Side, parse_ipv4
from neti_core.ops.common import PROG, Subparsers, add_json_argument
from neti_core.ops.output import print_json

COMMENT = "neti zk-proxy"
DEFAULT_PORT = 2181


@dataclass(frozen=True, slots=True)
class ProxySpec:
    """One proxy host → one ensemble member."""

    target: IPv4Address
    port: int = DEFAULT_PORT
    target_port: int = DEFAULT_PORT
    listen: IPv4Address | None = None  # None: the port on every address of the proxy
    snat_to: IPv4Address | None = None  # None: MASQUERADE (the outgoing interface's address)


def validate(spec: ProxySpec) -> list[str]:
    """What makes a spec unusable as forwarding rules (empty when it is fine)."""
    problems = []
    for name, address in (("--target", spec.target), ("--listen", spec.listen),
                          ("--snat-to", spec.snat_to)):
        if address is None:
            continue
        if address.is_unspecified or address.is_multicast or address.is_loopback or (
                address == IPv4Address("255.255.255.255")):
            problems.append(f"{name} {address} cannot be forwarded to or from")
    if spec.listen is not None and spec.listen == spec.target:
        problems.append(f"--listen and --target are both {spec.target}: that would loop")
    for name, port in (("--port", spec.port), ("--target-port", spec.target_port)):
        if not 1 <= port <= 65535:
            problems.append(f"{name} {port} is out of range 1-65535")
    return problems


def rules(spec: ProxySpec) -> list[str]:
    """The ``-A`` lines of the nat table, in order."""
    match_listen = f"-d {spec.listen}/32 " if spec.listen is not None else ""
    comment = f'-m comment --comment "{COMMENT}"'
    reply = (f"-j SNAT --to-source {spec.snat_to}" if spec.snat_to is not None else "-j MASQUERADE")
    return [
        f"-A PREROUTING {match_listen}-p tcp -m tcp --dport {spec.port} {comment} "
        f"-j DNAT --to-destination {spec.target}:{spec.target_port}",
        f"-A POSTROUTING -d {spec.target}/32 -p tcp -m tcp --dport {spec.target_port} {comment} {reply}",
    ]


def render(spec: ProxySpec) -> str:
    """A complete ``*nat`` table for ``iptables-restore`` (comments say how to install it)."""
    where = f"{spec.listen}:{spec.port}" if spec.listen is not None else f"port {spec.port}"
    lines = [
        f"# {COMMENT}: forward ZooKeeper ({where}, tcp) to the ensemble member "
        f"{spec.target}:{spec.target_port}",
        "# install: iptables-restore < FILE   (replaces the nat table only; run it again any time)",
        "# needs:   sysctl -w net.ipv4.ip_forward=1, and FORWARD accepting this traffic",
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        *rules(spec),
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


# --- the command ----------------------------------------------------------------------------------

def _address(text: str) -> IPv4Address:
    try:
        return parse_ipv4(text)
    except MalformedEntryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("zk-proxy", help="the nat rules of an EC2 ZooKeeper proxy host")
    actions = parser.add_subparsers(dest="zk_proxy_command", required=True, metavar="ACTION")
    render_parser = actions.add_parser(
        "render", help="print iptables-restore rules forwarding the ZK port to an ensemble member",
        description="Print the nat table of a ZooKeeper proxy host: DNAT of its ZooKeeper port to "
                    "the VPC ensemble member's public address, and MASQUERADE/SNAT for replies.")
    render_parser.add_argument("--target", required=True, type=_address,
                               help="the ensemble member's public (Elastic) IP")
    render_parser.add_argument("--listen", type=_address,
                               help="only this address of the proxy (default: any)")
    render_parser.add_argument("-c", "--config", default=None,
                               help="neti.yml: the EC2 side's zk_hosts port becomes --port's default")
    render_parser.add_argument("--port", type=_port, default=None,
                               help=f"the port clients connect to ({DEFAULT_PORT}, or neti.yml's)")
    render_parser.add_argument("--target-port", type=_port,
                               help="the member's client port (default: --port)")
    render_parser.add_argument("--snat-to", type=_address,
                               help="SNAT replies to this address instead of MASQUERADE")
    add_json_argument(render_parser)
    render_parser.set_defaults(handler=run)


def _client_port(config_path: str | None) -> int:
    """The port EC2 hosts dial (their zk_hosts entries point at the proxies), else the default."""
    if config_path is None:
        return DEFAULT_PORT
    hosts = load_config_or_exit(PROG, config_path).zk_hosts.get(Side.EC2, ())
    return hosts[0].port if hosts else DEFAULT_PORT


def run(args: argparse.Namespace) -> int:
    port = args.port or _client_port(args.config)
    spec = ProxySpec(target=args.target, port=port,
                     target_port=args.target_port or port, listen=args.listen,
                     snat_to=args.snat_to)
    problems = validate(spec)
    if problems:
        fail(PROG, "; ".join(problems))
    if args.json:
        print_json({"target": str(spec.target), "target_port": spec.target_port, "port": spec.port,
                    "listen": None if spec.listen is None else str(spec.listen),
                    "snat_to": None if spec.snat_to is None else str(spec.snat_to),
                    "table": "nat", "rules": rules(spec), "restore": render(spec)})
    else:
        print(render(spec), end="")
    return 0
