"""The console at 10,000 hosts (bench/console.py against the session's ZooKeeper): every row is
painted and every status change reaches its row. The speed and memory goals themselves (first
rows <= 1.5 s and the whole table <= 3 s from app start, a change visible <= 250 ms, RSS <= 250
MB) are the benchmark's to report (``goals_met``), not a timed assertion that a busy CI machine
could fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ten_thousand_hosts_meet_the_console_goals(zk_server):
    result = subprocess.run([sys.executable, "bench/console.py", "--hosts", "10000", "--changes", "5",
                             "--zk", zk_server.hosts], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["hosts"] == 10000  # full_table_s is only recorded once all 10,000 rows are shown
    assert 0 < figures["first_rows_s"] <= figures["full_table_s"]
    assert len(figures["change_visible_ms_all"]) == 5, figures  # every change reached its row
    print(json.dumps(figures))
