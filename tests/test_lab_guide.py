"""What ``neti lab up`` says it started (pure: the lines from the lab's manifest)."""

from __future__ import annotations

from pathlib import Path

from neti_core.lab.guide import started_lines, tool_command
from neti_core.lab.plan import plan_fleet
from neti_core.lab.state import LabState


def state(*, secured: bool) -> LabState:
    return LabState(pid=1, mode="netns", netns_prefix="nlab", zk_prefix="/neti", phase="ready",
                    zk_port=41234, moto_port=40321, console_config="/tmp/neti-lab-0/console.yml",
                    security_groups={"lab-fleet": "sg-1", "lab-fleet-vpc": "sg-2", "lab-zk": "sg-3",
                                     "lab-zkneti": "sg-4"},
                    ranges_file="/tmp/neti-lab-0/ip-ranges.json", secured=secured)


def test_a_secured_lab_says_so_and_an_insecure_one_says_it_is_open():
    plans = plan_fleet(40, 25, 5)
    secured = started_lines(state(secured=True), plans)
    assert secured[0] == ("started ZooKeeper 127.0.0.1:41234 (TLS-only, ACLs; operator credentials in the "
                          "console config) prefix /neti and moto's EC2 API http://127.0.0.1:40321")
    assert "OPEN: no TLS, no ACLs (--insecure)" in started_lines(state(secured=False), plans)[0]
    assert secured[1].startswith("started 40 hosts with a neti-agent (app-001 … app-040: 30 EC2-Classic "
                                 "side, 10 VPC side")
    assert secured[2].startswith("launched 5 instances without Neti (legacy-041 … legacy-045)")
    assert "lab-fleet sg-1 and lab-fleet-vpc sg-2 (the fleet); lab-zk sg-3 and lab-zkneti sg-4" in secured[3]


def test_the_console_command_is_the_one_that_works_from_here(tmp_path: Path, monkeypatch):
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "neti-console").write_text("#!/bin/sh\n")
    (bin_dir / "neti-console").chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert tool_command("neti-console", bin_dir, cwd=tmp_path) == ".venv/bin/neti-console"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert tool_command("neti-console", bin_dir, cwd=tmp_path) == "neti-console"
