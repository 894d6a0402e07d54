"""The last phases check what they claim: the fleet's security groups open to AWS's ranges,
read from moto's EC2 API by the console's inventory poller, opened with ``neti sg aws-ranges``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neti_core.aws import Instance, ec2_client
from neti_core.cli import main
from neti_core.config import load_config
from neti_core.fleet import Ec2Poller, FleetModel, TreeRead, ZkState
from neti_core.fleet.state import FleetSnapshot
from neti_core.members import Member, format_party_entry, parse_ipv4
from neti_core.phases import check_move
from neti_core.schema import AgentStatus

RANGES = Path(__file__).parent / "data" / "ip-ranges.json"


@pytest.fixture
def config_path(moto_server, tmp_path) -> str:
    path = tmp_path / "neti.yml"
    path.write_text(yaml.safe_dump({"ec2_endpoint_url": moto_server.url, "aws_region": "us-east-1",
                                    "aws_key": "testing", "aws_secret_key": "testing",
                                    "ignore_name_patterns": ["zkneti*"]}))
    return str(path)


def launch(ec2, group: str, names: list[str], side: str) -> None:
    image = ec2.describe_images()["Images"][0]["ImageId"]
    found = ec2.run_instances(ImageId=image, MinCount=len(names), MaxCount=len(names),
                              SecurityGroupIds=[group])["Instances"]
    for name, raw in zip(names, found, strict=True):
        ec2.create_tags(Resources=[raw["InstanceId"]], Tags=[{"Key": "Name", "Value": name},
                                                             {"Key": "neti:side", "Value": side}])


def fleet_snapshot(instances: list[Instance], groups) -> FleetSnapshot:
    """The console's model of a fleet where every running instance runs Neti with reject_all on
    (every earlier guard passes), fed the poller's inventory and security groups."""
    party, statuses = [], {}
    for n, instance in enumerate(instances, 1):
        member = Member(instance.public_ip, instance.private_ip, parse_ipv4(f"192.168.0.{n}"),
                        instance.side, instance.instance_id)
        party.append(format_party_entry(f"{n:032x}", member))
        statuses[instance.instance_id] = AgentStatus(
            instance.instance_id, str(member.overlay), instance.side.value, "1.2.0", True, "fleet",
            len(instances), len(instances), "h", 1000.0).to_json()
    model = FleetModel(ec2_configured=True)
    model.reset(TreeRead(party=party, cversion=len(instances), statuses=statuses,
                         defaults=b'{"reject_all": true, "who": "ops", "when": 1}'), 0.1)
    model.set_zk_state(ZkState.CONNECTED, 1000.0)
    model.set_instances(instances, (), 1000.0, groups=groups)
    batch = model.flush()
    assert batch is not None
    return batch.snapshot


def open_ranges(capsys, config_path: str, *groups: str, revert: bool = False) -> None:
    argv = ["sg", "aws-ranges", "-c", config_path, "--ranges-file", str(RANGES), "--apply",
            *(["--revert"] if revert else [])]
    for group in groups:
        argv += ["--group", group]
    assert main(argv) == 0
    capsys.readouterr()


def test_migrate_is_refused_until_every_fleet_group_is_open_to_the_aws_ranges(ec2, config_path, capsys):
    classic = ec2.create_security_group(GroupName="fleet-classic", Description="x")["GroupId"]
    vpc = ec2.create_security_group(GroupName="fleet-vpc", Description="x")["GroupId"]
    proxies = ec2.create_security_group(GroupName="zk-proxies", Description="x")["GroupId"]
    launch(ec2, classic, ["app1", "app2"], "ec2")
    launch(ec2, vpc, ["app3"], "vpc")
    launch(ec2, proxies, ["zkneti1"], "ec2")  # ignored by the console: its group is not the fleet's
    config = load_config(config_path)
    poller = Ec2Poller(lambda: ec2_client(config), config.ignore_name_patterns, 60)

    def verdict(current: str = "open-security-groups", target: str = "migrate"):
        instances, _ = poller.poll_once()
        return check_move(current, target, fleet_snapshot(instances, poller.poll_groups(instances)))

    refused = verdict()
    assert not refused.allowed
    assert refused.reasons == (  # by name: the same words every time
        "the fleet's security groups are open to the AWS ranges: 2 of 2 not open "
        f"(fleet-classic, fleet-vpc) — neti sg aws-ranges --group {classic} "
        f"--group {vpc} --ranges-file … --apply",)
    assert not verdict("reject-everywhere", "open-security-groups").allowed

    open_ranges(capsys, config_path, classic)
    half = verdict()
    assert not half.allowed and f"--group {vpc} --ranges-file" in half.reasons[0]
    assert classic not in half.reasons[0]

    open_ranges(capsys, config_path, vpc)
    assert verdict().allowed
    assert verdict("reject-everywhere", "open-security-groups").allowed
    passed = [c for c in verdict().checks if c.label.startswith("the fleet's security groups")]
    assert passed[0].ok and passed[0].detail == "2 groups open"

    open_ranges(capsys, config_path, vpc, revert=True)  # the emergency path closes the phase again
    assert not verdict().allowed


def test_a_hand_made_rule_on_a_few_ports_does_not_count_as_open(ec2, config_path):
    group = ec2.create_security_group(GroupName="web", Description="x")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "3.80.0.0/12", "Description": "neti aws-ranges"}]}])
    launch(ec2, group, ["app1"], "vpc")
    config = load_config(config_path)
    poller = Ec2Poller(lambda: ec2_client(config), config.ignore_name_patterns, 60)
    instances, _ = poller.poll_once()
    groups = poller.poll_groups(instances)
    assert [(g.name, g.open) for g in groups] == [("web", False)]


def test_unreadable_groups_make_the_guard_unknown_not_passed(ec2, config_path):
    group = ec2.create_security_group(GroupName="web", Description="x")["GroupId"]
    launch(ec2, group, ["app1"], "vpc")
    config = load_config(config_path)
    poller = Ec2Poller(lambda: ec2_client(config), config.ignore_name_patterns, 60)
    instances, _ = poller.poll_once()
    ec2.delete_security_group(GroupId=group)  # gone between the two calls: describe fails
    groups = poller.poll_groups(instances)
    assert isinstance(groups, str)
    refused = check_move("open-security-groups", "migrate", fleet_snapshot(instances, groups))
    assert not refused.allowed
    assert refused.reasons[0].startswith("the fleet's security groups are open to the AWS ranges: unknown: ")
