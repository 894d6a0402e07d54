"""``neti sg aws-ranges`` and ``neti sg sync-zk-proxy`` against moto's EC2 server over HTTP."""

from __future__ import annotations

import json
import re
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml

from neti_core.cli import main
from neti_core.ops import sgrules
from neti_core.ops.ipranges import RangesFileError, load_ranges, parse_ranges, select

RANGES = Path(__file__).parent / "data" / "ip-ranges.json"
# us-east-1 EC2 in the sample: 3.80.0.0/13 + 3.88.0.0/13 collapse into one /12.
US_EAST_EC2 = ["3.80.0.0/12", "18.204.0.0/14", "34.192.0.0/12"]
HANDMADE = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}


@pytest.fixture
def config(moto_server, tmp_path):
    path = tmp_path / "neti.yml"
    path.write_text(yaml.safe_dump({"ec2_endpoint_url": moto_server.url, "aws_region": "us-east-1",
                                    "aws_key": "testing", "aws_secret_key": "testing"}))
    return str(path)


def neti(capsys, *argv):
    """Run ``neti`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def rules_of(ec2, group):
    """What a user sees in the console: (protocol, from, to, cidr) of every IPv4 ingress rule."""
    perms = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    return {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"])
            for p in perms for r in p.get("IpRanges", [])}


def planned(document):
    return {(c["protocol"], c["from_port"], c["to_port"], c["cidr"]) for c in document["changes"]}


def new_group(ec2, name):
    return ec2.create_security_group(GroupName=name, Description=name)["GroupId"]


def test_aws_ranges_plan_is_exactly_what_apply_creates_and_apply_is_idempotent(ec2, config, capsys):
    group = new_group(ec2, "web")
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[HANDMADE])
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "18.204.0.0/14"}]}])
    before = rules_of(ec2, group)
    args = ("sg", "aws-ranges", "-c", config, "--group", group, "--ranges-file", str(RANGES))

    status, out, _ = neti(capsys, *args, "--json")
    plan = json.loads(out)
    assert status == 0 and plan["applied"] is False
    expected = {(p, 0, 65535, c) for c in US_EAST_EC2 for p in ("tcp", "udp")}
    assert planned(plan) == expected - {("tcp", 0, 65535, "18.204.0.0/14")}
    assert plan["unchanged"] == 1  # already present: skipped, not an error
    assert rules_of(ec2, group) == before  # the plan changed nothing

    status, out, _ = neti(capsys, *args, "--json", "--apply")
    applied = json.loads(out)
    assert status == 0 and applied["done"] == 5
    assert rules_of(ec2, group) - before == planned(plan)

    status, out, _ = neti(capsys, *args, "--apply")
    assert status == 0
    assert "plan: 0 to authorize, 0 to revoke, 6 already as wanted" in out
    assert "applied: 0 changed" in out

    status, out, _ = neti(capsys, *args, "--revert")
    assert status == 0 and out.count("revoke ") == 6 and "dry run" in out
    status, out, _ = neti(capsys, *args, "--revert", "--apply", "--json")
    assert json.loads(out)["done"] == 6
    assert rules_of(ec2, group) == {("tcp", 22, 22, "10.0.0.0/8")}  # the hand-made rule stays
    status, out, _ = neti(capsys, *args, "--revert", "--apply", "--json")
    assert json.loads(out)["changes"] == []


def test_aws_ranges_filters_and_pacing(ec2, config, capsys):
    group = new_group(ec2, "db")
    args = ("sg", "aws-ranges", "-c", config, "--group", group, "--ranges-file", str(RANGES), "--json")
    _, out, _ = neti(capsys, *args, "--region", "eu-west-1")
    assert {c["cidr"] for c in json.loads(out)["changes"]} == {"54.72.0.0/15"}
    _, out, _ = neti(capsys, *args, "--all-regions")
    assert {c["cidr"] for c in json.loads(out)["changes"]} == {*US_EAST_EC2, "54.72.0.0/15"}
    _, out, _ = neti(capsys, *args, "--service", "AMAZON")
    assert {c["cidr"] for c in json.loads(out)["changes"]} == {"3.80.0.0/12", "52.94.0.0/22"}
    started = time.monotonic()
    _, out, _ = neti(capsys, *args, "--apply", "--pace", "0.3")
    result = json.loads(out)
    assert result["done"] == 6 and result["calls"] == 2
    assert time.monotonic() - started >= 0.3  # two calls (tcp, udp), one pause between them


def test_apply_skips_rules_that_appeared_between_plan_and_apply(ec2):
    group = new_group(ec2, "race")
    wanted = [sgrules.Rule(group, "udp", 0, 65535, IPv4Network(c), "neti") for c in US_EAST_EC2]
    changes = sgrules.plan(wanted, sgrules.read_group(ec2, group))
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{  # someone else, meanwhile
        "IpProtocol": "udp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": US_EAST_EC2[1]}]}])
    result = sgrules.apply(ec2, changes)
    # AWS rejects the whole batch; moto may have added the rules before the duplicate one, which
    # then count as skipped on the one-by-one retry. Either way: no error, and all three are there.
    assert result.done + result.skipped == 3 and result.skipped >= 1
    assert rules_of(ec2, group) == {("udp", 0, 65535, c) for c in US_EAST_EC2}


@pytest.mark.parametrize(("argv", "words"), [
    (["--group", "sg-nothex!"], "not a security group id"),
    (["--group", "sg-0123456789abcdef0"], "security group not found"),
    (["--ranges-file", "/nonexistent/ip-ranges.json"], "cannot read"),
    (["--region", "mars-north-1"], "no IPv4 prefixes for region mars-north-1"),
])
def test_bad_input_is_one_line_and_exit_2(ec2, config, capsys, argv, words):
    group = new_group(ec2, "bad")
    base = {"--group": group, "--ranges-file": str(RANGES)}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    status, _, err = neti(capsys, "sg", "aws-ranges", "-c", config,
                            *[x for pair in base.items() for x in pair])
    assert status == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert rules_of(ec2, group) == set()


def test_the_ranges_file_is_validated_whole(tmp_path):
    document = json.loads(RANGES.read_text())
    assert select(parse_ranges(document).prefixes, ["us-east-1"], ["EC2"]) == [
        IPv4Network(c) for c in US_EAST_EC2]
    for bad, where in [("3.80.0.0/33", "prefixes[1]"), ("3.80.0.1/12", "prefixes[1]"),
                       ("3.80.0.0/12; rm -rf /", "prefixes[1]"), ("2600::/32", "prefixes[1]")]:
        broken = json.loads(RANGES.read_text())
        broken["prefixes"][1]["ip_prefix"] = bad
        with pytest.raises(RangesFileError, match=re.escape(where)):
            parse_ranges(broken)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(RangesFileError, match="not JSON"):
        load_ranges(tmp_path / "x.json")
    with pytest.raises(RangesFileError, match="format"):
        parse_ranges({"ipv6_prefixes": []})


# --- sync-zk-proxy --------------------------------------------------------------------------------

def launch(ec2, group, names):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    found = ec2.run_instances(ImageId=image, MinCount=len(names), MaxCount=len(names),
                              SecurityGroupIds=[group])["Instances"]
    for name, raw in zip(names, found, strict=True):
        ec2.create_tags(Resources=[raw["InstanceId"]], Tags=[{"Key": "Name", "Value": name}])
    return {name: (raw["InstanceId"], raw["PublicIpAddress"]) for name, raw in zip(names, found,
                                                                                   strict=True)}


def test_sync_zk_proxy_allows_each_side_from_the_other_and_removes_stale_addresses(ec2, config,
                                                                                   capsys):
    vpc_group, proxy_group = new_group(ec2, "zk-vpc"), new_group(ec2, "zkneti")
    zk_hosts = launch(ec2, vpc_group, ["zk1", "zk2", "zk3"])
    proxies = launch(ec2, proxy_group, ["zkneti1", "zkneti2"])
    launch(ec2, new_group(ec2, "web"), ["web1"])
    handmade = {"IpProtocol": "tcp", "FromPort": 2181, "ToPort": 2181,
                "IpRanges": [{"CidrIp": "198.51.100.7/32"}]}
    ec2.authorize_security_group_ingress(GroupId=vpc_group, IpPermissions=[handmade])
    args = ("sg", "sync-zk-proxy", "-c", config, "--vpc-group", vpc_group, "--proxy-group",
            proxy_group, "--json")

    _, out, _ = neti(capsys, *args)
    plan = json.loads(out)
    wanted_vpc = {("tcp", 2181, 2181, f"{ip}/32") for _, ip in proxies.values()}
    wanted_proxy = {("tcp", 2181, 2181, f"{ip}/32") for _, ip in zk_hosts.values()}
    assert {(c["group"], c["cidr"]) for c in plan["changes"]} == (
        {(vpc_group, r[3]) for r in wanted_vpc} | {(proxy_group, r[3]) for r in wanted_proxy})
    assert {c["action"] for c in plan["changes"]} == {"authorize"}
    assert (plan["vpc_hosts"], plan["proxies"]) == (3, 2)

    _, out, _ = neti(capsys, *args, "--apply")
    assert json.loads(out)["done"] == 5
    assert rules_of(ec2, vpc_group) == wanted_vpc | {("tcp", 2181, 2181, "198.51.100.7/32")}
    assert rules_of(ec2, proxy_group) == wanted_proxy
    _, out, _ = neti(capsys, *args, "--apply")
    assert json.loads(out)["changes"] == [] and json.loads(out)["unchanged"] == 5

    # zkneti2 is replaced by zkneti3: its old address must go, the new one come in.
    ec2.terminate_instances(InstanceIds=[proxies["zkneti2"][0]])
    proxies.update(launch(ec2, proxy_group, ["zkneti3"]))
    _, out, _ = neti(capsys, *args)
    changes = {(c["action"], c["cidr"]) for c in json.loads(out)["changes"]}
    assert changes == {("revoke", f"{proxies['zkneti2'][1]}/32"),
                       ("authorize", f"{proxies['zkneti3'][1]}/32")}
    neti(capsys, *args, "--apply")
    assert rules_of(ec2, vpc_group) == {("tcp", 2181, 2181, f"{proxies[n][1]}/32")
                                        for n in ("zkneti1", "zkneti3")} | {
        ("tcp", 2181, 2181, "198.51.100.7/32")}  # an operator's own rule is not ours to remove
    _, out, _ = neti(capsys, *args, "--include-unmarked")
    assert [(c["action"], c["cidr"]) for c in json.loads(out)["changes"]] == [
        ("revoke", "198.51.100.7/32")]


def test_sync_zk_proxy_refuses_to_empty_a_group_and_rejects_bad_ids(ec2, config, capsys):
    vpc_group, proxy_group = new_group(ec2, "zk-vpc"), new_group(ec2, "zkneti")
    launch(ec2, vpc_group, ["zk1"])
    args = ("sg", "sync-zk-proxy", "-c", config, "--vpc-group", vpc_group)
    status, _, err = neti(capsys, *args, "--proxy-group", proxy_group, "--apply")
    assert status == 2 and f"no running instances in {proxy_group}" in err
    assert rules_of(ec2, vpc_group) == set() and rules_of(ec2, proxy_group) == set()
    status, _, err = neti(capsys, *args, "--proxy-group", vpc_group)
    assert status == 2 and "must be different" in err
    status, _, err = neti(capsys, *args, "--proxy-group", "sg-0000000000000000f")
    assert status == 2 and "not found" in err and len(err.strip().splitlines()) == 1
