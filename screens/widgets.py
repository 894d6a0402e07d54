"""Widgets the screens share: the header with the fleet's counts, and the connection banner.
(The fleet's table is in ``fleet_table.py``.)"""

from __future__ import annotations

from textual.widgets import Static

from neti_core.fleet import FleetSnapshot, ZkState
from neti_core.fleet.overlay import OverlayUsage
from screens.cells import age


class HeaderBar(Static):
    """k9s-like header: where we are, who we are, and the counts that matter during a migration."""

    _shown = ""

    def show(self, snapshot: FleetSnapshot, *, operator: str, readonly: bool, extra: str = "") -> None:
        s = snapshot.summary
        mode = "[b red]READ-ONLY[/]" if readonly else "[b green]read-write[/]"
        phase = snapshot.phase.phase if snapshot.phase else "prepare"
        registered = f"[b]{s.registered:,}[/]/{s.total:,} registered"
        neti = f"[b]{s.percent_in_neti:g}%[/] in Neti" if s.inventory_known else "[dim]EC2 unknown[/]"
        errors = f"[b red]{s.errors} errors[/]" if s.errors else "0 errors"
        lag = f"[yellow]{s.lagging} lagging[/]" if s.lagging else "0 lagging"
        maxchange = "-" if snapshot.maxchange is None else str(snapshot.maxchange)
        who = f"operator [b]{operator}[/] {mode}"
        overlay = overlay_figure(snapshot.overlay)
        if s.recording:  # the lab without root: say plainly that no firewall is being changed
            extra += f" · [b yellow]{s.recording} agents only record rules (no kernel)[/]"
        text = (f"[b]neti[/] · phase [b]{phase}[/] · {who} · maxchange {maxchange} · {overlay}\n"
                f"{registered} · {neti} · reject_all on [b]{s.reject_on:,}[/] · {errors} · {lag}"
                f" · guard {s.guard} · no agent {s.no_agent}{extra}")
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # two lines, always: no layout pass for the whole screen


def overlay_figure(usage: OverlayUsage) -> str:
    """``overlay 55 used · 65,479 free · 10 idle``; free turns red below 10 % (the alert's threshold).
    Idle: held by instances neither running nor live in Neti (``neti registry reclaim`` judges them)."""
    text = f"overlay [b]{usage.used:,}[/] used"
    free = usage.free
    if free is not None and usage.total:
        colour = "b red" if free < usage.total * 0.10 else "b"
        text += f" · [{colour}]{free:,}[/] free"
    if usage.idle:
        text += f" · [yellow]{usage.idle:,} idle[/]"
    return text


class ConnectionBanner(Static):
    """Shown only when ZooKeeper or the EC2 API is unreachable: the data on screen may be stale."""

    _shown: str | None = None

    def show(self, snapshot: FleetSnapshot, now: float) -> None:
        problems = []
        zk = snapshot.zk
        if zk.state is not ZkState.CONNECTED:
            since = f" for {age(now - zk.since)}" if zk.since else ""
            if zk.state is ZkState.CONNECTING:
                problems.append(f"Connecting to ZooKeeper at {zk.hosts}…")
            else:
                problems.append(f"ZooKeeper {zk.state.value}: {zk.hosts}{since} — reconnecting; "
                                "data may be stale")
        ec2 = snapshot.ec2
        if ec2.configured and ec2.error:
            last = f"last good inventory {age(now - ec2.last_ok)} ago" if ec2.last_ok else "no inventory yet"
            problems.append(f"EC2 API: {ec2.error} — {last}; retrying")
        text = "\n".join(problems)
        if text != self._shown:
            self._shown = text
            self.update(text)
            self.display = bool(problems)
