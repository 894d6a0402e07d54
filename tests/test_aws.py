"""neti_core.aws against moto's EC2 server over HTTP (real boto3 calls)."""

from __future__ import annotations

from neti_core.aws import parse_instance, running_instances, tag_instance
from neti_core.members import Side


def _launch(ec2, count, name_prefix, subnet_id=None):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    kwargs = {"SubnetId": subnet_id} if subnet_id else {}
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.micro", **kwargs)["Instances"]]
    for n, instance_id in enumerate(ids):
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": f"{name_prefix}{n}"}])
    return ids


def test_running_instances_pages_through_everything_and_skips_ignored_and_stopped(ec2):
    web = _launch(ec2, 7, "web")
    proxies = _launch(ec2, 2, "zkneti")
    ec2.stop_instances(InstanceIds=web[:1])
    # A page size smaller than the fleet makes the paginator really page.
    found = {i.instance_id: i for i in running_instances(ec2, ["zkneti*"], page_size=5)}
    assert set(found) == set(web[1:])
    assert not set(found) & set(proxies)
    assert all(i.private_ip is not None for i in found.values())


def test_side_comes_from_the_vpc_id_and_tags_round_trip(ec2):
    vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.1.0/24")["Subnet"]["SubnetId"]
    (vpc_host,) = _launch(ec2, 1, "vpc", subnet_id=subnet)
    tag_instance(ec2, vpc_host, {"overlay_ip": "192.168.0.9", "neti_version": "0.1.0"})
    (instance,) = [i for i in running_instances(ec2) if i.instance_id == vpc_host]
    assert instance.side is Side.VPC
    assert instance.overlay_ip_tag == "192.168.0.9" and instance.neti_version == "0.1.0"


def test_a_malformed_instance_is_reported_not_passed_on():
    import pytest

    from neti_core.errors import MalformedEntryError

    with pytest.raises(MalformedEntryError):
        parse_instance({"InstanceId": "i-12345678", "PrivateIpAddress": "10.0.0.1; rm -rf /"})


def test_a_side_tag_overrides_the_vpc_id_and_a_bad_one_is_malformed():
    import pytest

    from neti_core.errors import MalformedEntryError

    raw = {"InstanceId": "i-12345678", "VpcId": "vpc-1", "Tags": [{"Key": "neti:side", "Value": "ec2"}]}
    assert parse_instance(raw).side is Side.EC2
    raw["Tags"] = [{"Key": "neti:side", "Value": "classic"}]
    with pytest.raises(MalformedEntryError):
        parse_instance(raw)
