"""Reclaiming overlay addresses of gone instances: moto's EC2 server over HTTP, a real ZooKeeper.

What an operator checks: an address comes back only when its instance is gone (terminated or
unknown to EC2), not live in Neti, for longer than the quarantine; never on a failed or throttled
EC2 listing; and hosts registering meanwhile never end up sharing an address.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest

from neti_core.aws import instance_states
from neti_core.cli import main
from neti_core.config import ZkPaths, parse_config
from neti_core.errors import ConfigError
from neti_core.lab.zkserver import free_port
from neti_core.members import Member, Side, parse_ipv4
from neti_core.ops.reclaimcmd import metrics_registry
from neti_core.reclaim import (
    Evidence,
    Marker,
    Pair,
    ReclaimPlan,
    apply_plan,
    plan_reclaim,
    read_evidence,
)
from neti_core.registry import OverlayRegistry
from neti_core.schema import AgentStatus, AuditEntry
from tests.conftest import connect
from tests.fixtures.agent import wait_for

SUBNET = IPv4Network("10.77.0.0/24")
QUARANTINE = 3.0  # seconds: "3s" in neti.yml


def _launch(ec2, count: int) -> list[str]:
    image = ec2.describe_images()["Images"][0]["ImageId"]
    found = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
                              InstanceType="t3.micro")["Instances"]
    return [raw["InstanceId"] for raw in found]


def _config(tmp_path, zk_server, prefix: str, endpoint: str, **extra) -> str:
    path = tmp_path / f"neti-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump({
        "zk_prefix": prefix, "zk_hosts": {"vpc": [zk_server.hosts]}, "overlay_subnet": str(SUBNET),
        "ec2_endpoint_url": endpoint, "aws_region": "us-east-1", "aws_key": "testing",
        "aws_secret_key": "testing", "reclaim_quarantine": f"{QUARANTINE:g}s", **extra}))
    return str(path)


def _announce(client, paths: ZkPaths, overlay: IPv4Address) -> None:
    member = Member(parse_ipv4("203.0.113.5"), parse_ipv4("10.1.0.5"), overlay, Side.VPC)
    client.create(f"{paths.ip_map}/{uuid.uuid4().hex}-{member.identifier()}", ephemeral=True,
                  makepath=True)


def _status(client, paths: ZkPaths, instance_id: str, overlay: IPv4Address) -> None:
    status = AgentStatus(instance_id=instance_id, overlay_ip=str(overlay), side="vpc", version="1.0",
                         reject_all=False, reject_all_source="config", membership_version=1,
                         members=1, ruleset_hash="h")
    client.create(f"{paths.status}/{instance_id}", status.to_json(), ephemeral=True, makepath=True)


def _reclaim(capsys, config: str, *flags: str) -> tuple[int, dict | str, str]:
    try:
        status = main(["registry", "reclaim", "-c", config, *flags])
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if "--json" in flags and out else out), err


def _pairs(client, paths: ZkPaths) -> dict[str, str]:
    registry = OverlayRegistry(client, paths, SUBNET)
    ip_to_id, id_to_ip = registry.read_maps()
    assert {ip_to_id[ip] for ip in id_to_ip.values()} == set(id_to_ip)  # still consistent
    return id_to_ip


@pytest.fixture
def lab(request, ec2, zk, zk_paths) -> SimpleNamespace:
    """The services and the test's ZooKeeper prefix, in one place."""
    return SimpleNamespace(moto=request.getfixturevalue("moto_server"), ec2=ec2,
                           zk_server=request.getfixturevalue("zk_server"), zk=zk, paths=zk_paths,
                           tmp=request.getfixturevalue("tmp_path"))


@pytest.fixture
def fleet(lab):
    """Six registered instances, one of each kind, and one never-launched id."""
    ec2, zk, zk_paths = lab.ec2, lab.zk, lab.paths
    ids = _launch(ec2, 5)
    kinds = dict(zip(["running", "terminated", "stopped", "terminated-live", "terminated-status"],
                     ids, strict=True))
    kinds["unknown"] = "i-0feedface0000000f"  # EC2 never knew it (or forgot it)
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    overlays = {kind: registry.register(i).overlay_ip for kind, i in kinds.items()}
    ec2.terminate_instances(InstanceIds=[kinds["terminated"], kinds["terminated-live"],
                                         kinds["terminated-status"]])
    ec2.stop_instances(InstanceIds=[kinds["stopped"]])
    _announce(zk, zk_paths, overlays["running"])
    _status(zk, zk_paths, kinds["running"], overlays["running"])
    _announce(zk, zk_paths, overlays["terminated-live"])  # its agent still in the party
    _status(zk, zk_paths, kinds["terminated-status"], overlays["terminated-status"])
    config = _config(lab.tmp, lab.zk_server, zk_paths.prefix, lab.moto.url)
    return {"ids": kinds, "overlays": overlays, "config": config}


def test_gone_addresses_come_back_only_after_the_quarantine(fleet, zk, zk_paths, capsys):
    ids, config = fleet["ids"], fleet["config"]
    gone = {ids["terminated"], ids["unknown"]}

    status, plan, _ = _reclaim(capsys, config, "--json")  # plan: writes nothing
    assert status == 0
    assert {r["instance_id"]: r["verdict"] for r in plan["addresses"]} == dict.fromkeys(
        gone, "starts at next --apply")
    assert plan["summary"] | {"quarantine_seconds": 0} == {
        "used": 6, "free": 248, "total": 254, "reclaimable": 0, "quarantined": 0, "newly_gone": 2,
        "kept": 4, "quarantine_seconds": 0}
    assert zk.exists(zk_paths.reclaim_gone) is None

    status, first, _ = _reclaim(capsys, config, "--apply", "--json")  # starts the quarantine
    assert status == 0 and first["result"]["marked"] == 2 and first["result"]["reclaimed"] == 0
    assert sorted(zk.get_children(zk_paths.reclaim_gone)) == sorted(gone)
    status, second, _ = _reclaim(capsys, config, "--apply", "--json")
    assert second["result"]["reclaimed"] == 0 and second["summary"]["quarantined"] == 2
    assert set(_pairs(zk, zk_paths)) == set(ids.values())

    marked_at = max(zk.exists(f"{zk_paths.reclaim_gone}/{i}").ctime for i in gone) / 1000
    wait_for(lambda: time.time() > marked_at + QUARANTINE, timeout=30, what="the quarantine")
    status, third, _ = _reclaim(capsys, config, "--apply", "--json")
    assert status == 0 and third["result"]["reclaimed"] == 2
    assert {r["instance_id"]: r["verdict"] for r in third["addresses"]} == dict.fromkeys(gone, "reclaimed")
    assert third["summary"]["used"] == 4 and third["summary"]["free"] == 250
    # The running, stopped, party-live and status-live instances keep their addresses.
    assert set(_pairs(zk, zk_paths)) == set(ids.values()) - gone
    assert zk.get_children(zk_paths.reclaim_gone) == []
    entries = [AuditEntry.from_json(zk.get(f"{zk_paths.audit}/{n}")[0])
               for n in zk.get_children(zk_paths.audit)]
    assert sorted((e.action, e.target, e.before) for e in entries) == sorted(
        ("registry.reclaim", i, str(fleet["overlays"][k])) for k, i in ids.items() if i in gone)
    assert {e.extra["ec2_state"] for e in entries} == {"terminated", "unknown to EC2"}


def test_an_instance_that_registers_again_restarts_its_quarantine(fleet, zk, zk_paths, capsys):
    config, unknown = fleet["config"], fleet["ids"]["unknown"]
    _reclaim(capsys, config, "--apply")
    time.sleep(0.05)
    OverlayRegistry(zk, zk_paths, SUBNET).register(unknown)  # its agent came back, then left again
    marked_at = zk.exists(f"{zk_paths.reclaim_gone}/{unknown}").ctime / 1000
    wait_for(lambda: time.time() > marked_at + QUARANTINE, timeout=30, what="the quarantine")
    _, result, _ = _reclaim(capsys, config, "--apply", "--json")
    verdicts = {r["instance_id"]: r["verdict"] for r in result["addresses"]}
    assert verdicts[unknown] == "quarantine started"  # the old marker predates the registration
    assert verdicts[fleet["ids"]["terminated"]] == "reclaimed"
    assert unknown in _pairs(zk, zk_paths)


def test_the_table_says_what_it_would_do(fleet, capsys):
    status, out, _ = _reclaim(capsys, fleet["config"])
    lines = out.strip().splitlines()
    assert status == 0
    assert lines[0].split() == ["INSTANCE", "OVERLAY", "EC2", "GONE", "SINCE", "ELIGIBLE", "VERDICT"]
    assert lines[-1] == (f"overlay {SUBNET}: 6 used, 248 free; 0 reclaimable, 0 in quarantine (3s), "
                         f"2 newly gone (plan only: --apply releases them)")


def test_auto_does_nothing_unless_neti_yml_turns_it_on(fleet, lab, capsys):
    zk, zk_paths, tmp_path = lab.zk, lab.paths, lab.tmp
    status, out, _ = _reclaim(capsys, fleet["config"], "--apply", "--auto")
    assert (status, out) == (0, "automatic reclaim is off (reclaim_auto: false in neti.yml): nothing done\n")
    assert zk.exists(zk_paths.reclaim_gone) is None
    on = _config(tmp_path, lab.zk_server, zk_paths.prefix, lab.moto.url, reclaim_auto=True)
    status, out, _ = _reclaim(capsys, on, "--apply", "--auto", "--metrics-file",
                              str(tmp_path / "neti.prom"))
    assert status == 0 and out.count("\n") == 1 and "started 2 quarantines" in out
    metrics = (tmp_path / "neti.prom").read_text()
    assert "neti_overlay_addresses_free 248.0" in metrics
    assert "neti_overlay_addresses_quarantined 2.0" in metrics


# --- EC2 failures: nothing is reclaimed ------------------------------------------------------------

class _Throttling(BaseHTTPRequestHandler):
    """An EC2 endpoint that throttles every call: what AWS answers a fleet-wide burst of listings."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
                b"</Error></Errors><RequestID>1</RequestID></Response>")
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def throttling_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("failure", ["throttled", "unreachable"])
def test_an_ec2_api_failure_reclaims_nothing(fleet, lab, capsys, throttling_endpoint, failure):
    zk, zk_paths = lab.zk, lab.paths
    _reclaim(capsys, fleet["config"], "--apply")  # markers exist, the quarantine is running
    markers = sorted(zk.get_children(zk_paths.reclaim_gone))
    marked_at = max(zk.exists(f"{zk_paths.reclaim_gone}/{i}").ctime for i in markers) / 1000
    wait_for(lambda: time.time() > marked_at + QUARANTINE, timeout=30, what="the quarantine")
    endpoint = throttling_endpoint if failure == "throttled" else f"http://127.0.0.1:{free_port('127.0.0.1')}"
    broken = _config(lab.tmp, lab.zk_server, zk_paths.prefix, endpoint)
    status, out, err = _reclaim(capsys, broken, "--apply")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.endswith("nothing reclaimed\n")
    assert ("throttled" in err) == (failure == "throttled")
    assert set(_pairs(zk, zk_paths)) == set(fleet["ids"].values())
    assert sorted(zk.get_children(zk_paths.reclaim_gone)) == markers


def test_a_live_agent_unknown_to_ec2_means_the_wrong_account_or_region(fleet, zk, zk_paths, capsys):
    _status(zk, zk_paths, "i-0abad0000000000a1", IPv4Address("10.77.0.250"))
    status, out, err = _reclaim(capsys, fleet["config"], "--apply")
    assert status == 1 and out == ""
    assert err == ("neti: error: EC2 does not list 1 instances whose agents are live (e.g. "
                   "i-0abad0000000000a1): wrong account, region or endpoint?: nothing reclaimed\n")
    assert zk.exists(zk_paths.reclaim_gone) is None


# --- concurrency ----------------------------------------------------------------------------------

def test_hosts_registering_during_a_reclaim_never_share_an_address(lab, capsys):
    """40 gone pairs are released while 30 new hosts register and 10 of the gone ones come back,
    each with its own session, in a /25 where random picks collide often. The plan is judged
    before the hosts start, so every registration races the releases themselves."""
    zk, zk_paths, zk_server = lab.zk, lab.paths, lab.zk_server
    subnet = IPv4Network("10.66.0.0/25")  # 126 addresses: 40 gone + 30 new fit even before a release
    gone = [f"i-{n:017x}" for n in range(1, 41)]  # unknown to EC2
    registry = OverlayRegistry(zk, zk_paths, subnet)
    for instance_id in gone:
        registry.register(instance_id)
    config = _config(lab.tmp, zk_server, zk_paths.prefix, lab.moto.url,
                     overlay_subnet=str(subnet), reclaim_quarantine="0s")
    _reclaim(capsys, config, "--apply")  # starts (and, at 0 s, ends) every quarantine
    plan = plan_reclaim(read_evidence(zk, zk_paths, subnet), instance_states(lab.ec2), 0.0, time.time())
    assert len(plan.reclaim) == len(gone)
    newcomers = [f"i-{n:017x}" for n in range(100, 130)]
    returning = gone[::4]
    hosts = newcomers + returning
    clients = [connect(zk_server.hosts) for _ in hosts]
    barrier = threading.Barrier(len(hosts) + 1)
    got: dict[str, IPv4Address] = {}
    errors: list[BaseException] = []

    def register(n: int) -> None:
        try:
            barrier.wait()
            got[hosts[n]] = OverlayRegistry(clients[n], zk_paths, subnet).register(hosts[n]).overlay_ip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(len(hosts))]
    for thread in threads:
        thread.start()
    barrier.wait()
    result = apply_plan(zk, zk_paths, plan, "tester")
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.stop()
        client.close()
    assert not errors
    assert len(set(got.values())) == len(hosts)  # nobody shares an address
    pairs = _pairs(zk, zk_paths)
    for instance_id, ip in got.items():  # every host holds the pair it runs on
        assert pairs[instance_id] == str(ip)
    assert len(set(pairs.values())) == len(pairs)
    # A returning host rewrote its pair before the release (the release fails: it keeps its
    # address) or found it released (it got a new one); every other gone pair was released.
    kept = {g.pair.instance_id for g in result.lost_race}
    assert kept <= set(returning)
    assert {g.pair.instance_id for g in result.reclaimed} == set(gone) - kept
    assert set(pairs) == set(hosts)
    print(f"returning hosts: {len(kept)} kept their address, {len(returning) - len(kept)} got a new one")


@pytest.mark.parametrize(("value", "seconds"), [
    ("7d", 7 * 86400), ("36h", 36 * 3600), ("30m", 1800), ("90s", 90), ("0s", 0), (2, 2 * 86400),
    ("1.5d", 1.5 * 86400)])
def test_the_quarantine_reads_as_a_duration(value, seconds):
    assert parse_config({"reclaim_quarantine": value}).reclaim_quarantine == seconds


@pytest.mark.parametrize("value", ["7", "a week", "-1d", "7w", True, None, "-2"])
def test_a_quarantine_that_is_not_a_duration_is_one_clear_error(value):
    with pytest.raises(ConfigError, match="reclaim_quarantine"):
        parse_config({"reclaim_quarantine": value})


def test_the_default_quarantine_is_a_week_and_auto_is_off():
    config = parse_config({})
    assert (config.reclaim_quarantine, config.reclaim_auto) == (7 * 86400, False)


def test_report_shows_used_free_and_reclaimable(fleet, lab, capsys):
    def used_ips(config: str) -> tuple[dict, str]:
        assert main(["report", "-c", config, "--used-ips", "--json"]) == 0
        out, err = capsys.readouterr()
        return json.loads(out), err

    document, _ = used_ips(fleet["config"])
    assert (document["used"], document["free"], document["reclaimable"], document["quarantined"]) == (
        6, 248, 0, 2)
    _reclaim(capsys, fleet["config"], "--apply")
    marked_at = max(z.ctime for z in (lab.zk.exists(f"{lab.paths.reclaim_gone}/{i}")
                                      for i in lab.zk.get_children(lab.paths.reclaim_gone))) / 1000
    wait_for(lambda: time.time() > marked_at + QUARANTINE, timeout=30, what="the quarantine")
    document, _ = used_ips(fleet["config"])
    assert (document["reclaimable"], document["quarantined"]) == (2, 0)
    # Without EC2 the count is unknown, not zero; used and free still show.
    broken = _config(lab.tmp, lab.zk_server, lab.paths.prefix, f"http://127.0.0.1:{free_port('127.0.0.1')}")
    document, err = used_ips(broken)
    assert (document["used"], document["free"], document["reclaimable"]) == (6, 248, None)
    assert err.startswith("neti: warning: reclaimable count unknown: EC2 API:") and err.count("\n") == 1


# --- alerting -------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def test_the_overlay_alert_rules_pass_their_promtool_tests_and_use_the_written_metrics():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/install-deps installs prometheus)"
    tested = subprocess.run([promtool, "test", "rules", "tests/prometheus/neti-overlay-alerts-test.yml"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((REPO / "conf/prometheus/neti-alerts.yml").read_text())
    group = next(g for g in rules["groups"] if g["name"] == "neti-overlay")
    used = {name for rule in group["rules"] for name in re.findall(r"neti_[a-z_]+", rule["expr"])}
    plan = ReclaimPlan((), (), (), (), kept=0, used=0, total=254, quarantine=0.0)
    written = {line.split()[2] for line in generate_latest(metrics_registry(plan, None)).decode()
               .splitlines() if line.startswith("# TYPE")}
    assert used and used <= written


# --- the console's figure -------------------------------------------------------------------------

def test_the_console_model_counts_used_free_and_idle_addresses():
    """Three addresses: one announced in the party, one whose instance runs, one of a gone host."""
    from neti_core.aws import Instance
    from neti_core.fleet import FleetModel, TreeRead
    from screens.widgets import overlay_figure

    model = FleetModel(ec2_configured=True, overlay_subnet=IPv4Network("10.5.0.0/29"))  # 6 usable
    live, running, gone = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"
    party = [f"{1:032x}-54.0.0.2|10.1.0.2|10.5.0.1|0"]
    owners = {"10.5.0.1": live.encode(), "10.5.0.2": running.encode(), "10.5.0.3": gone.encode()}
    model.reset(TreeRead(party=party, cversion=1, ip_to_id=owners, id_to_ip=[live, running, gone]), 0.1)
    usage = model.flush().snapshot.overlay
    assert (usage.used, usage.free, usage.idle) == (3, 3, None)  # idle needs the EC2 inventory
    model.set_instances([Instance(running, "app-2", Side.EC2, parse_ipv4("10.1.0.3"), None, "running", {})],
                        [], 1.0)
    usage = model.flush().snapshot.overlay
    assert (usage.used, usage.free, usage.idle) == (3, 3, 1)
    assert overlay_figure(usage) == "overlay [b]3[/] used · [b]3[/] free · [yellow]1 idle[/]"
    model.set_ip_to_id("10.5.0.4", b"i-0000000000000000d")
    model.set_ip_to_id("10.5.0.5", b"i-0000000000000000e")
    model.set_ip_to_id("10.5.0.6", b"i-0000000000000000f")
    usage = model.flush().snapshot.overlay
    assert overlay_figure(usage) == "overlay [b]6[/] used · [b red]0[/] free · [yellow]4 idle[/]"


def test_an_instance_seen_alive_again_loses_its_marker(fleet, lab, capsys):
    unknown = fleet["ids"]["unknown"]
    _reclaim(capsys, fleet["config"], "--apply")
    assert unknown in lab.zk.get_children(lab.paths.reclaim_gone)
    _announce(lab.zk, lab.paths, fleet["overlays"]["unknown"])  # its agent is back in the party
    status, result, _ = _reclaim(capsys, fleet["config"], "--apply", "--json")
    assert status == 0 and result["result"]["cleared"] == 1
    assert lab.zk.get_children(lab.paths.reclaim_gone) == [fleet["ids"]["terminated"]]


def test_apply_without_operator_credentials_is_one_line(fleet, lab, capsys):
    from kazoo.security import make_acl, make_digest_acl

    operator_only = [make_digest_acl("operator", "secret", all=True), make_acl("world", "anyone", read=True)]
    lab.zk.create(f"{lab.paths.prefix}/reclaim", acl=operator_only)
    status, out, err = _reclaim(capsys, fleet["config"], "--apply")
    assert (status, out) == (1, "")
    assert err == "neti: error: ZooKeeper refused the write: reclaim needs the operator's credentials\n"
    assert set(_pairs(lab.zk, lab.paths)) == set(fleet["ids"].values())


# --- the decision alone (pure) --------------------------------------------------------------------

_STATES = st.sampled_from([None, "pending", "running", "stopping", "stopped", "shutting-down", "terminated"])


@given(st.lists(st.tuples(_STATES, st.booleans(), st.booleans(), st.one_of(st.none(), st.floats(0, 100)),
                          st.floats(0, 100)), min_size=1, max_size=20),
       st.floats(0, 50), st.floats(0, 200))
def test_only_a_gone_unlive_pair_past_its_quarantine_is_ever_reclaimed(pairs, quarantine, now):
    """Whatever the mix: a pair is reclaimed only if EC2 says terminated or does not know it, no
    party entry or status is live, and its marker is newer than its last claim and older than the
    quarantine. Every pair lands in exactly one bucket."""
    built, markers, states, live, statuses = [], {}, {}, set(), set()
    for n, (state, in_party, has_status, marked_at, claimed_at) in enumerate(pairs):
        pair = Pair(f"i-{n + 1:017x}", IPv4Address(f"10.9.0.{n + 1}"), 0, 0, claimed_at)
        built.append(pair)
        if state is not None:
            states[pair.instance_id] = state
        if in_party:
            live.add(pair.overlay_ip)
        if has_status and state is not None:  # a live agent EC2 does not know refuses the run
            statuses.add(pair.instance_id)
        if marked_at is not None:
            markers[pair.instance_id] = Marker(pair.instance_id, 0, marked_at)
    evidence = Evidence(tuple(built), markers, frozenset(live), frozenset(statuses), len(built), 254)
    plan = plan_reclaim(evidence, states, quarantine, now)
    assert plan.kept + len(plan.reclaim) + len(plan.quarantined) + len(plan.unmarked) == len(built)
    for gone in plan.reclaim:
        pair, marker = gone.pair, gone.marker
        assert states.get(pair.instance_id) in (None, "terminated")
        assert pair.overlay_ip not in live and pair.instance_id not in statuses
        assert marker is not None and pair.claimed_at <= marker.since and marker.since + quarantine <= now
    assert {m.instance_id for m in plan.clear}.isdisjoint(g.pair.instance_id for g in plan.reclaim)
