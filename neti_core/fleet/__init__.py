"""The live fleet view behind the console, with no UI: ZooKeeper watches and the EC2 inventory
feed a model that emits typed, batched events (``events``) and rows to show (``state``)."""

from neti_core.fleet.ec2poll import Ec2Poller
from neti_core.fleet.events import FleetBatch, FleetEvent
from neti_core.fleet.state import (
    EMPTY_SNAPSHOT,
    AuditRecord,
    Ec2Health,
    FleetSnapshot,
    FleetSummary,
    HostRow,
    RuleState,
    ZkHealth,
    ZkState,
)
from neti_core.fleet.tracker import FleetModel
from neti_core.fleet.treeread import TreeRead
from neti_core.fleet.watcher import LiveFleet

__all__ = [
    "EMPTY_SNAPSHOT",
    "AuditRecord",
    "Ec2Health",
    "Ec2Poller",
    "FleetBatch",
    "FleetEvent",
    "FleetModel",
    "FleetSnapshot",
    "FleetSummary",
    "HostRow",
    "LiveFleet",
    "RuleState",
    "TreeRead",
    "ZkHealth",
    "ZkState",
]
