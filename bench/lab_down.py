"""How long `neti lab down` takes, from the command to nothing of the lab left.

    python bench/lab_down.py --hosts 40

Starts a lab (as root: namespaces and real agents) with its own state directory and namespace
prefix, waits until every agent is in sync, then times `neti lab down` as a user would (the
command's wall time). The floor it is compared with, measured in the same run: removing the same
number of namespaces with `ip netns del` alone. Goal (issue 15): down within 5 s at 40 hosts (it
took ~32 s when hosts were stopped one by one). The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

GOAL_SECONDS = 5.0


def neti(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    command = Path(sys.executable).parent / "neti"
    began = time.perf_counter()
    result = subprocess.run([str(command), *args], capture_output=True, text=True, env=env, timeout=900)
    return time.perf_counter() - began, result


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def raw_floor(count: int) -> float:
    """Adding then deleting ``count`` namespaces with ip(8): what no lab tear-down can beat."""
    names = [f"nbd{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    began = time.perf_counter()
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=40)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/lab_down.py: needs root (the lab's namespaces)")
    prefix = f"nb{uuid.uuid4().hex[:3]}"
    state = Path(tempfile.mkdtemp(prefix="neti-bench-lab-"))
    env = {**os.environ, "NETI_LAB_NETNS_PREFIX": prefix}
    up_s, up = neti("lab", "--state-dir", str(state), "up", "--hosts", str(args.hosts), "--no-console",
                    env=env)
    if up.returncode != 0:
        raise SystemExit(f"lab up failed:\n{up.stdout}{up.stderr}")
    made = len(namespaces(prefix))
    down_s, down = neti("lab", "--state-dir", str(state), "down", env=env)
    left = namespaces(prefix)
    floor_s = raw_floor(made)
    result = {"hosts": args.hosts, "namespaces": made, "up_s": round(up_s, 2), "down_s": round(down_s, 2),
              "raw_netns_del_s": round(floor_s, 2), "left_namespaces": len(left),
              "down_ok": down.returncode == 0 and not state.exists()}
    result["goals_met"] = bool(result["down_ok"] and not left and down_s <= GOAL_SECONDS)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
