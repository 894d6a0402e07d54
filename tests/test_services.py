"""The real-service harness itself: moto's EC2 server answers real boto3 calls over HTTP."""

from __future__ import annotations


def test_moto_server_runs_instances_over_http(ec2):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=3, MaxCount=3, InstanceType="t3.micro")
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(running) == 3
    assert all(i["InstanceId"].startswith("i-") for i in running)
