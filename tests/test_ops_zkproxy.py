"""``neti zk-proxy render``: the rules load into a real kernel and really forward ZooKeeper's port.

Three network namespaces made by the test: a client (EC2 side), the proxy, and an ensemble member
that can only answer the proxy (no route back to the client), so a reply only arrives if the DNAT
and the MASQUERADE both work.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from neti_core.cli import main
from neti_core.members import parse_ipv4
from neti_core.ops.zkproxy import ProxySpec, render, validate

CLIENT, PROXY_IN, PROXY_OUT, MEMBER = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"
SERVER = f"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{MEMBER}", 2181)); s.listen(8); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(("imok from " + peer[0]).encode()); c.close()
"""
CLIENT_CODE = f"""
import socket
try:
    print(socket.create_connection(("{PROXY_IN}", 2181), timeout=2).recv(64).decode())
except OSError as exc:
    print("failed:", exc)
"""


def sh(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@pytest.fixture
def hosts(as_root):
    """client — proxy — member, each in its own namespace; removed afterwards by name."""
    tag = uuid.uuid4().hex[:6]
    ns = {role: f"neti-t7-{tag}-{role}" for role in ("client", "proxy", "member")}
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"c{tag}", "netns", ns["client"], "type", "veth",
           "peer", "name", f"pc{tag}", "netns", ns["proxy"])
        sh("ip", "link", "add", f"m{tag}", "netns", ns["member"], "type", "veth",
           "peer", "name", f"pm{tag}", "netns", ns["proxy"])
        for name, dev, address in ((ns["client"], f"c{tag}", CLIENT), (ns["proxy"], f"pc{tag}", PROXY_IN),
                                   (ns["proxy"], f"pm{tag}", PROXY_OUT), (ns["member"], f"m{tag}", MEMBER)):
            sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", dev)
            sh("ip", "-n", name, "link", "set", dev, "up")
        sh("ip", "netns", "exec", ns["proxy"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        server = subprocess.Popen(["ip", "netns", "exec", ns["member"], sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield ns
        server.kill()
        server.wait()
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ask_zookeeper(ns: dict[str, str]) -> str:
    return sh("ip", "netns", "exec", ns["client"], sys.executable, "-c", CLIENT_CODE).strip()


def nat_rules(ns: dict[str, str]) -> list[str]:
    saved = sh("ip", "netns", "exec", ns["proxy"], "iptables-save", "-t", "nat")
    return [line for line in saved.splitlines() if line.startswith("-A")]


@pytest.mark.netns
def test_rendered_rules_forward_the_zookeeper_port_and_install_idempotently(hosts, capsys):
    assert ask_zookeeper(hosts).startswith("failed")  # nothing listens on the proxy itself
    assert main(["zk-proxy", "render", "--target", MEMBER, "--listen", PROXY_IN]) == 0
    rules = capsys.readouterr().out
    for _ in range(2):  # installing twice leaves the same two rules
        sh("ip", "netns", "exec", hosts["proxy"], "iptables-restore", stdin=rules)
        installed = nat_rules(hosts)
        assert len(installed) == 2
    assert any("DNAT" in r and f"--to-destination {MEMBER}:2181" in r for r in installed)
    assert any("MASQUERADE" in r for r in installed)
    # The member sees the proxy's address (MASQUERADE), and its answer reaches the client.
    assert ask_zookeeper(hosts) == f"imok from {PROXY_OUT}"


@pytest.mark.netns
def test_snat_variant_loads_and_forwards(hosts, capsys):
    assert main(["zk-proxy", "render", "--target", MEMBER, "--snat-to", PROXY_OUT]) == 0
    sh("ip", "netns", "exec", hosts["proxy"], "iptables-restore", stdin=capsys.readouterr().out)
    assert any(f"--to-source {PROXY_OUT}" in r for r in nat_rules(hosts))
    assert ask_zookeeper(hosts) == f"imok from {PROXY_OUT}"


def test_render_is_a_whole_nat_table_and_bad_addresses_are_refused(capsys):
    text = render(ProxySpec(target=parse_ipv4("54.1.2.3"), port=2182, target_port=2181))
    assert text.splitlines()[3:] == [
        "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        '-A PREROUTING -p tcp -m tcp --dport 2182 -m comment --comment "neti zk-proxy" '
        "-j DNAT --to-destination 54.1.2.3:2181",
        '-A POSTROUTING -d 54.1.2.3/32 -p tcp -m tcp --dport 2181 -m comment --comment "neti zk-proxy" '
        "-j MASQUERADE",
        "COMMIT"]
    assert validate(ProxySpec(target=parse_ipv4("54.1.2.3"), listen=parse_ipv4("54.1.2.3")))
    for argv in (["--target", "127.0.0.1"], ["--target", "1.2.3.4\n-A INPUT -j ACCEPT"],
                 ["--target", "54.1.2.3", "--port", "0"], ["--target", "example.com"]):
        with pytest.raises(SystemExit) as caught:
            main(["zk-proxy", "render", *argv])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and len(err.strip().splitlines()) == 1, err


def test_render_takes_the_config_like_every_command(tmp_path, capsys):
    """`-c neti.yml` is accepted; the EC2 side's zk_hosts port (what clients dial) is the default."""
    config = tmp_path / "neti.yml"
    config.write_text("zk_hosts:\n  ec2: ['zkneti-1:2182']\n  vpc: ['zk-1:2181']\n")
    assert main(["zk-proxy", "render", "-c", str(config), "--target", "54.1.2.3"]) == 0
    assert "--dport 2182 -m comment" in capsys.readouterr().out
    assert main(["zk-proxy", "render", "-c", str(config), "--target", "54.1.2.3", "--port", "2181"]) == 0
    assert "--dport 2181 -m comment" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main(["zk-proxy", "render", "-c", str(tmp_path / "missing.yml"), "--target", "54.1.2.3"])
    assert caught.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
