"""neti.yml: the original keys keep their meaning; every bad value is one error naming its key."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from neti_core.config import PortRange, ZkHost, load_config, parse_config
from neti_core.errors import ConfigError
from neti_core.members import Side

REPO = Path(__file__).resolve().parent.parent

ORIGINAL = {
    "aws_key": "AKIAEXAMPLE",
    "aws_secret_key": "secret",
    "log_file": "/var/log/neti.log",
    "table_files_path": "/etc/neti/tables",
    "open_ports": [80, 443, "8000:8100"],
    "reject_all": True,
    "ssh_whitelist": ["10.0.0.0/8", "192.0.2.0/24"],
    "zk_prefix": "/neti",
    "zk_update_interval_path": "interval",
    "zk_max_change_threshold_path": "maxchange",
    "zk_iptoid_node": "ip-to-id",
    "zk_idtoip_node": "id-to-ip",
    "zk_ip_map_node": "ip-map",
    "overlay_subnet": "192.168.0.0/16",
    "zk_hosts": {"ec2": ["10.0.0.1:2181", "zk1.example.com:2181"], "vpc": ["172.31.0.5:2181"]},
    "nat_overrides": {"192.168.1.1": "10.1.1.1"},
}


def test_every_original_key_is_accepted_with_its_meaning():
    config = parse_config(ORIGINAL)
    assert config.aws_key == "AKIAEXAMPLE"
    assert config.open_ports == (PortRange(80, 80), PortRange(443, 443), PortRange(8000, 8100))
    assert config.reject_all is True
    assert config.ssh_whitelist == (IPv4Network("10.0.0.0/8"), IPv4Network("192.0.2.0/24"))
    assert config.overlay_subnet == IPv4Network("192.168.0.0/16")
    assert config.zk_hosts[Side.EC2] == (ZkHost("10.0.0.1", 2181), ZkHost("zk1.example.com", 2181))
    assert config.zk_connect_string(Side.VPC) == "172.31.0.5:2181"
    assert config.nat_overrides == {IPv4Address("192.168.1.1"): IPv4Address("10.1.1.1")}
    paths = config.zk_paths
    assert (paths.ip_to_id, paths.id_to_ip, paths.ip_map) == (
        "/neti/ip-to-id", "/neti/id-to-ip", "/neti/ip-map")
    assert (paths.interval, paths.maxchange) == ("/neti/interval", "/neti/maxchange")


def test_aws_keys_are_optional_and_defaults_are_sane():
    config = parse_config({})
    assert config.aws_key is None and config.aws_secret_key is None
    assert config.reject_all is False
    assert config.zk_prefix == "/neti"
    assert config.ipset_name == "ec2_whitelist"


def test_empty_aws_keys_of_the_original_cookbook_mean_unset(tmp_path):
    """Hosts with an instance role: ``aws_key: ""`` is "use the default credential chain"."""
    path = tmp_path / "neti.yml"
    path.write_text(yaml.safe_dump(ORIGINAL | {"aws_key": "", "aws_secret_key": ""}))
    config = load_config(path)
    assert config.aws_key is None and config.aws_secret_key is None
    with pytest.raises(ConfigError, match="aws_key and aws_secret_key must be given together"):
        parse_config(ORIGINAL | {"aws_secret_key": ""})


def test_absolute_node_paths_are_kept():
    config = parse_config({"zk_prefix": "/x", "zk_update_interval_path": "/elsewhere/interval"})
    assert config.zk_paths.interval == "/elsewhere/interval"
    assert config.zk_paths.maxchange == "/x/maxchange"


def test_the_documented_example_is_valid():
    config = load_config(REPO / "conf" / "neti.yml")
    assert config.zk_hosts[Side.EC2]


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"overlay_subnet": "192.168.0.0/33"}, "overlay_subnet", "bad CIDR"),
        ({"overlay_subnet": "192.168.0.1/16"}, "overlay_subnet", "host bits"),
        ({"overlay_subnet": "10.0.0.0/31"}, "overlay_subnet", "too small"),
        ({"ssh_whitelist": ["10.0.0.0/8", "banana"]}, "ssh_whitelist[1]", "bad CIDR"),
        ({"open_ports": [22, 70000]}, "open_ports[1]", "out of range"),
        ({"open_ports": ["9000:8000"]}, "open_ports[0]", "backwards"),
        ({"open_ports": [True]}, "open_ports[0]", "port number"),
        ({"open_ports": "80"}, "open_ports", "must be a list"),
        ({"zk_hosts": {"classic": ["1.2.3.4:2181"]}}, "zk_hosts.classic", "unknown side"),
        ({"zk_hosts": {"ec2": ["1.2.3.4"]}}, "zk_hosts.ec2[0]", "host:port"),
        ({"zk_hosts": {"ec2": ["1.2.3.4:99999"]}}, "zk_hosts.ec2[0]", "out of range"),
        ({"zk_hosts": {"ec2": ["bad host;rm:2181"]}}, "zk_hosts.ec2[0]", "bad host name"),
        ({"reject_all": "yes"}, "reject_all", "true or false"),
        ({"reject_all": 1}, "reject_all", "true or false"),
        ({"zk_prefix": "neti"}, "zk_prefix", "absolute"),
        ({"zk_ip_map_node": "ip map"}, "zk_ip_map_node", "node name"),
        ({"nat_overrides": {"192.168.1.1": "not-an-ip"}}, "nat_overrides.192.168.1.1", "IPv4"),
        ({"nat_overrides": {"10.9.9.9": "10.1.1.1"}}, "nat_overrides.10.9.9.9", "overlay_subnet"),
        ({"firewall_backend": "nftables"}, "firewall_backend", "one of"),
        ({"ipset_name": "a b"}, "ipset_name", "letters"),
        ({"vpc_private_range": "192.168.0.0/20"}, "overlay_subnet", "overlaps"),
        ({"aws_secret_key": None}, "aws_secret_key", "together"),
        ({"resync_seconds": 0}, "resync_seconds", "more than 0"),
        ({"table_files_path": 5}, "table_files_path", "string"),
        ({"open_port": [80]}, "open_port", "did you mean 'open_ports'"),
        ({"frobnicate": 1}, "frobnicate", "unknown key"),
    ],
)
def test_each_invalid_value_names_its_key(patch, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_config({**ORIGINAL, **patch})
    assert caught.value.key == key
    assert words in caught.value.problem
    assert "\n" not in str(caught.value)


def test_unreadable_and_unparsable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("open_ports: [80\nreject_all: true\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listy = tmp_path / "list.yml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


@pytest.mark.parametrize("command", ["neti-agent", "neti-console", "neti"])
def test_cli_prints_one_line_and_exits_2_on_a_bad_config(tmp_path, command):
    bad = tmp_path / "neti.yml"
    bad.write_text(yaml.safe_dump({**ORIGINAL, "open_ports": [80, 70000]}))
    argv = ["config", "check", "-c", str(bad)] if command == "neti" else ["-c", str(bad)]
    result = subprocess.run([str(Path(sys.executable).parent / command), *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "open_ports[1]" in lines[0] and "70000" in lines[0]
    assert result.stdout == ""
