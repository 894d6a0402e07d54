"""``neti report`` on a seeded fleet: moto's EC2 server over HTTP and a real ZooKeeper."""

from __future__ import annotations

import json
import uuid
from ipaddress import IPv4Network

import pytest
import yaml

from neti_core.aws import Instance
from neti_core.cli import main
from neti_core.config import ZkPaths
from neti_core.members import Member, ParsedParty, Side, parse_ipv4, parse_party
from neti_core.ops.report import NetiView, join, select, used_ips
from neti_core.registry import OverlayRegistry
from neti_core.schema import AgentStatus
from neti_core.versions import Version, natural_key, parse_version
from tests.conftest import connect

SUBNET = "192.168.0.0/24"
# Name -> (registered in id-to-ip, party entry: "match" | "stale" | None, status version, tag version)
FLEET = {
    "web1": (True, "match", "0.9.2", None),
    "web2": (True, "match", "0.10.0", None),
    "web3": (True, "match", "0.10.1", None),
    "web4": (True, "match", "1.0.0rc1", None),
    "web5": (True, "match", "1.0.0", None),
    "web6": (True, "match", "1.0", None),
    "web7": (True, None, None, "1.0.0"),     # agent stopped: an overlay IP but no live entry
    "web8": (False, "match", None, None),    # live entry but no id-to-ip (half-registered)
    "web9": (True, "stale", None, None),     # live entry for its overlay, someone else's addresses
    "web10": (True, "match", None, "0.10.0"),  # no status: the version comes from the tag
    "web11": (False, None, None, None),
    "web12": (False, None, None, None),
}
IN_NETI = ["web1", "web2", "web3", "web4", "web5", "web6", "web10"]


def _launch(ec2, names):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    found = ec2.run_instances(ImageId=image, MinCount=len(names), MaxCount=len(names),
                              InstanceType="t3.micro")["Instances"]
    for name, raw in zip(names, found, strict=True):
        ec2.create_tags(Resources=[raw["InstanceId"]], Tags=[{"Key": "Name", "Value": name}])
    ids = [raw["InstanceId"] for raw in found]
    described = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    by_id = {i["InstanceId"]: i for r in described for i in r["Instances"]}
    return {name: by_id[i] for name, i in zip(names, ids, strict=True)}


@pytest.fixture(scope="module")
def fleet(moto_server, zk_server, tmp_path_factory):
    """A fleet of 12 web hosts in every membership state, 2 ignored proxies, 1 stopped host."""
    import boto3

    moto_server.reset()
    ec2 = boto3.client("ec2", **moto_server.client_kwargs())
    hosts = _launch(ec2, [*FLEET, "zkneti1", "zkneti2", "stopped1"])
    ec2.stop_instances(InstanceIds=[hosts["stopped1"]["InstanceId"]])
    prefix = f"/t-report-{uuid.uuid4().hex[:8]}"
    paths = ZkPaths.under(prefix)
    client = connect(zk_server.hosts)
    registry = OverlayRegistry(client, paths, IPv4Network(SUBNET))
    registry.ensure_tree()
    overlays = {}
    for name, (registered, entry, status_version, tag_version) in FLEET.items():
        raw = hosts[name]
        instance_id = raw["InstanceId"]
        overlay = registry.register(instance_id).overlay_ip if registered else "192.168.0.250"
        overlays[name] = str(overlay)
        if tag_version:
            ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "neti_version", "Value": tag_version}])
        if entry:
            public, private = ((raw["PublicIpAddress"], raw["PrivateIpAddress"]) if entry == "match"
                               else ("203.0.113.9", "10.255.0.9"))
            member = Member(parse_ipv4(public), parse_ipv4(private), parse_ipv4(str(overlay)), Side.VPC)
            client.create(f"{paths.ip_map}/{uuid.uuid4().hex}-{member.identifier()}", ephemeral=True)
        if status_version:
            status = AgentStatus(instance_id=instance_id, overlay_ip=str(overlay), side="vpc",
                                 version=status_version, reject_all=False, reject_all_source="config",
                                 membership_version=3, members=9, ruleset_hash="h",
                                 error="iptables-restore: exit 1" if name == "web3" else None)
            client.create(f"{paths.status}/{instance_id}", status.to_json(), ephemeral=True,
                          makepath=True)
    config = tmp_path_factory.mktemp("report") / "neti.yml"
    config.write_text(yaml.safe_dump({
        "zk_prefix": prefix, "zk_hosts": {"vpc": [zk_server.hosts]}, "overlay_subnet": SUBNET,
        "ec2_endpoint_url": moto_server.url, "aws_region": "us-east-1",
        "aws_key": "testing", "aws_secret_key": "testing"}))
    yield {"config": str(config), "hosts": hosts, "overlays": overlays}
    client.stop()
    client.close()


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_report_counts_and_joins_the_seeded_fleet(fleet, capsys):
    status, out, _ = run(capsys, "report", "-c", fleet["config"], "--json")
    assert status == 0
    report = json.loads(out)
    rows = {r["name"]: r for r in report["instances"]}
    # Ignored proxies (zkneti*) and the stopped host are not part of the fleet.
    assert [r["name"] for r in report["instances"]] == list(FLEET)  # natural order: web2 < web10
    assert report["summary"]["instances"] == 12
    assert report["summary"]["in_neti"] == 7
    assert report["summary"]["percent"] == 58.3
    assert report["summary"]["unmatched_members"] == 1  # web9's stale entry
    assert (report["summary"]["overlay_used"], report["summary"]["overlay_free"]) == (9, 245)
    assert sorted(n for n, r in rows.items() if r["in_neti"]) == sorted(IN_NETI)
    assert rows["web10"]["version"] == "0.10.0" and rows["web10"]["version_source"] == "tag"
    assert rows["web5"]["version_source"] == "status" and rows["web5"]["status"] == "ok"
    assert rows["web3"]["status"] == "error: iptables-restore: exit 1"
    assert rows["web1"]["overlay_ip"] == fleet["overlays"]["web1"]
    assert rows["web1"]["private_ip"] == fleet["hosts"]["web1"]["PrivateIpAddress"]
    assert rows["web8"]["notes"] == ["in the party but has no id-to-ip entry"]


def test_table_output_ends_with_the_summary_line(fleet, capsys):
    status, out, _ = run(capsys, "report", "-c", fleet["config"])
    lines = out.strip().splitlines()
    assert status == 0
    assert lines[0].split()[:3] == ["NAME", "INSTANCE", "SIDE"]
    assert [line.split()[0] for line in lines[1:13]] == list(FLEET)
    assert lines[-2].startswith("overlay IPs: 9 used, 245 free")
    assert lines[-1] == "12 instances, 7 in Neti (58.3%)"


@pytest.mark.parametrize(("flags", "expected"), [
    (["--in-neti"], IN_NETI),
    (["--not-in-neti"], ["web7", "web8", "web9", "web11", "web12"]),
    # 0.9.2 < 0.10.0 although "0.9.2" > "0.10.0" as strings.
    (["--in-neti", "--below-version", "0.10.0"], ["web1"]),
    (["--in-neti", "--below-version", "1.0.0"], ["web1", "web2", "web3", "web4", "web10"]),
    # Not in Neti and no known version: below any version. web7's tag says 1.0.0.
    (["--below-version", "1.0"], ["web1", "web2", "web3", "web4", "web8", "web9", "web10", "web11",
                                  "web12"]),
])
def test_filters_select_what_the_operator_asked_for(fleet, capsys, flags, expected):
    status, out, _ = run(capsys, "report", "-c", fleet["config"], "--names-only", *flags)
    assert status == 0
    assert out.split() == expected


def test_overlays_only_and_used_ips(fleet, capsys):
    _, out, _ = run(capsys, "report", "-c", fleet["config"], "--overlays-only", "--in-neti")
    assert out.split() == [fleet["overlays"][n] for n in IN_NETI]
    _, out, _ = run(capsys, "report", "-c", fleet["config"], "--used-ips")
    # web1-7, web9, web10 hold overlay IPs: 9 of the 254 usable addresses of a /24.
    # Every one of them runs in EC2: none is reclaimable or in quarantine.
    assert out.strip() == (f"9 / 254 overlay IPs used in {SUBNET} (3.5%), 245 free; "
                           f"0 reclaimable, 0 in quarantine")
    _, out, _ = run(capsys, "report", "-c", fleet["config"], "--used-ips", "--json")
    assert json.loads(out) == {"used": 9, "free": 245, "total": 254, "percent": 3.5, "subnet": SUBNET,
                               "reclaimable": 0, "quarantined": 0}


def test_bad_version_and_unreachable_services_are_one_line(fleet, capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        main(["report", "-c", fleet["config"], "--below-version", "latest"])
    assert caught.value.code == 2
    assert "not a version: 'latest'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["report", "-c", fleet["config"], "--zk", "127.0.0.1:1", "--timeout", "0.5"])
    err = capsys.readouterr().err.strip()
    assert caught.value.code == 1 and len(err.splitlines()) == 1 and "cannot reach ZooKeeper" in err


# --- the pure parts -------------------------------------------------------------------------------

def test_versions_compare_as_versions():
    assert Version("0.9.2") < Version("0.10.0") < Version("1.0.0rc1") < Version("1.0.0")
    assert parse_version("1.0") == parse_version("1.0.0") == parse_version("v1.0.0+build7")
    assert Version("1.0.dev1") < Version("1.0a1") < Version("1.0b2") < Version("1.0rc1")
    assert parse_version("latest") is None and parse_version(None) is None


def test_natural_sort_key():
    names = ["web10", "db2", "web2", "Web1", "web", "db10a", "db10"]
    assert sorted(names, key=natural_key) == ["db2", "db10", "db10a", "web", "Web1", "web2", "web10"]


def _instance(n: int, private: str, public: str | None = None, version: str | None = None) -> Instance:
    tags = {"Name": f"h{n}", **({"neti_version": version} if version else {})}
    return Instance(f"i-{n:017x}", f"h{n}", Side.EC2, parse_ipv4(private),
                    parse_ipv4(public) if public else None, "running", tags)


def test_join_matches_by_private_or_public_address_and_flags_overlay_disagreement():
    def entry(public: str, private: str, overlay: str, flag: str) -> str:
        return f"{uuid.uuid4().hex}-{public}|{private}|{overlay}|{flag}"

    party: ParsedParty = parse_party([
        entry("54.0.0.1", "10.0.0.1", "192.168.0.1", "0"),    # h1 by private and public
        entry("54.0.0.2", "172.31.0.2", "192.168.0.2", "1"),  # h2 moved to the VPC: public matches
        entry("54.0.0.3", "10.0.0.3", "192.168.0.33", "0"),   # h3 announces another overlay
        "garbage",
    ])
    view = NetiView(ip_to_id={}, id_to_ip={f"i-{n:017x}": f"192.168.0.{n}" for n in (1, 2, 3)},
                    party=party, statuses={})
    rows, unmatched = join([_instance(3, "10.0.0.3"), _instance(2, "10.9.9.9", "54.0.0.2"),
                            _instance(1, "10.0.0.1", "54.0.0.1", "0.1")], view)
    assert [r.name for r in rows] == ["h1", "h2", "h3"]
    assert [r.in_neti for r in rows] == [True, True, True]
    assert rows[0].version == "0.1" and rows[0].version_source == "tag"
    assert rows[2].notes == ("party announces overlay 192.168.0.33, id-to-ip says 192.168.0.3",)
    assert unmatched == 0
    assert [r.name for r in select(rows, below=Version("0.2"))] == ["h1", "h2", "h3"]


def test_used_ips_counts_only_host_addresses_in_the_subnet():
    subnet = IPv4Network("10.8.0.0/29")
    assert used_ips(["10.8.0.1", "10.8.0.6", "10.8.0.0", "10.9.0.1", "bad", "10.8.0.1"], subnet) == (2, 6)
