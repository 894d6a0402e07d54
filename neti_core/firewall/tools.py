"""Running the command-line tools (ipset, iptables-*) with typed errors; shared by the backends.

Subprocesses inherit the calling thread's network namespace, so these act where the caller is.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from neti_core.firewall.base import FirewallApplyError, FirewallUnavailableError
from neti_core.firewall.readback import LiveState, neti_sets
from neti_core.render import render_ipset_delta, render_ipset_stage, render_ipset_swap
from neti_core.rules import RuleSet, RuleSetDiff

TIMEOUT = 60.0
_DENIED = ("Permission denied", "Operation not permitted")


def run_tool(argv: Sequence[str], text: str | None = None) -> str:
    """Run a tool; its refusal becomes FirewallApplyError naming the tool and its message."""
    try:
        result = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError as exc:
        raise FirewallUnavailableError(f"{argv[0]} not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise FirewallApplyError(f"{argv[0]} timed out after {TIMEOUT:g}s") from exc
    if result.returncode != 0:
        if any(word in result.stderr for word in _DENIED):
            raise FirewallUnavailableError(f"{argv[0]}: {result.stderr.strip()} (needs root)")
        raise FirewallApplyError(f"{' '.join(argv[:3])} failed: {result.stderr.strip()[:500]}")
    return result.stdout


def ipset_restore(text: str) -> None:
    """Feed ``ipset -exist restore``; nothing to do for empty text."""
    if text:
        run_tool(["ipset", "-exist", "restore"], text)


def ipset_names() -> set[str]:
    return set(run_tool(["ipset", "list", "-n"]).split())


def start(argv: Sequence[str]) -> subprocess.Popen[str]:
    """Start a reader now, collect it later with :func:`finish` (so reads overlap)."""
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError as exc:
        raise FirewallUnavailableError(f"{argv[0]} not installed") from exc


def finish(process: subprocess.Popen[str]) -> str:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.communicate()
        raise FirewallApplyError(f"{process.args!r} timed out") from exc
    if process.returncode != 0:
        raise FirewallUnavailableError(f"{process.args!r} failed: {err.strip()[:500]}")
    return out


def add_sets(state: LiveState, save_text: str, ipset_name: str) -> LiveState:
    """Put Neti's sets from a whole ``ipset save`` into ``state``: members and any staging set."""
    lines = save_text.split("\n")
    names = [line.split(" ", 2)[1] for line in lines if line.startswith("create ")]
    state.sets = neti_sets(names, ipset_name)
    if ipset_name in names:
        create = f"create {ipset_name} "
        state.ipset_type = next(line.split()[2] for line in lines if line.startswith(create))
        add = f"add {ipset_name} "
        cut = len(add)
        state.ipset = frozenset([line[cut:] for line in lines if line.startswith(add)])
    return state


@contextmanager
def ipset_replaced_around(desired: RuleSet, sets: set[str]) -> Iterator[None]:
    """The whole set replaced *before* the iptables half (the ``with`` body), undone if that fails.

    Fill a staging set, swap it in, then run the body. The swap comes first because it is the
    step that can be refused late (a foreign set squatting on the name with another type): doing
    it after the iptables commit would leave new rules over the wrong set. If the body fails, a
    second swap puts the previous content back, so both halves stay as they were.
    """
    ipset_restore(render_ipset_stage(desired, create_live=desired.ipset_name not in sets,
                                     destroy_stale_staging=desired.staging_set in sets))
    try:
        ipset_restore(f"swap {desired.ipset_name} {desired.staging_set}\n")
    except FirewallApplyError:
        ipset_restore(f"destroy {desired.staging_set}\n")
        raise
    try:
        yield
    except FirewallApplyError:
        ipset_restore(render_ipset_swap(desired))  # swap back, then drop the new content
        raise
    ipset_restore(f"destroy {desired.staging_set}\n")


@contextmanager
def ipset_delta_around(change: RuleSetDiff) -> Iterator[None]:
    """The ipset half of a delta, wrapped around the iptables half (the ``with`` body).

    The set changes first, so new members are matchable when the rules that use them arrive. If
    the body fails, the set is put back as it was and the error goes on.
    """
    new = change.new
    if change.ipset_full:
        with ipset_replaced_around(new, ipset_names()):
            yield
        return
    ipset_restore(render_ipset_delta(new.ipset_name, change.ipset_add, change.ipset_del))
    try:
        yield
    except FirewallApplyError:  # re-add what was deleted, delete what was added
        ipset_restore(render_ipset_delta(new.ipset_name, change.ipset_del, change.ipset_add))
        raise
