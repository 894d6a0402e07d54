"""The lab: the whole system on one machine (ZooKeeper, EC2 API, simulated hosts, the console)."""
