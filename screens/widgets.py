"""Widgets the screens share: the header with the fleet's counts, and the connection banner.
(The fleet's table is in ``fleet_table.py``.)"""

from __future__ import annotations

from collections.abc import Sequence

from textual import events
from textual.widgets import Footer, Static

from neti_core.fleet import FleetSnapshot, FleetSummary, ZkState
from neti_core.fleet.overlay import OverlayUsage
from neti_core.maxchange import DEFAULT_MAXCHANGE
from screens.cells import age
from screens.context import context
from screens.fit import Part, fit_line


def header_lines(snapshot: FleetSnapshot, *, operator: str, readonly: bool, authenticated: bool = True,
                 extra: Sequence[Part] = ()) -> tuple[list[Part], list[Part]]:
    """The two header lines as parts: where we are and who we are; the counts that matter.
    A console without ZooKeeper credentials says so next to the operator's name, never dropped: the
    name it shows is then only what it writes in the audit, nothing ZooKeeper checked."""
    s = snapshot.summary
    phase = snapshot.phase.phase if snapshot.phase else "prepare"
    maxchange = snapshot.maxchange or str(DEFAULT_MAXCHANGE)
    maxchange_long = maxchange if snapshot.maxchange else f"{maxchange} (default)"
    mode = Part("[b red]READ-ONLY[/]") if readonly else Part("[b green]read-write[/]", "[b green]rw[/]", 3)
    first = [Part("[b]neti[/]", priority=4), Part(f"phase [b]{phase}[/]", f"[b]{phase}[/]"),
             Part(f"operator [b]{operator}[/]", f"[b]{operator}[/]", 2),
             *([] if authenticated else [Part("[b red]unauthenticated[/]", "[b red]no auth[/]")]), mode,
             Part(f"maxchange {maxchange_long}", f"maxch {maxchange}", 1), overlay_part(snapshot.overlay)]
    neti = (Part(f"[b]{s.percent_in_neti:g}%[/] in Neti", f"[b]{s.percent_in_neti:g}%[/] Neti")
            if s.inventory_known else Part("[dim]EC2 unknown[/]", "[dim]EC2 ?[/]", 3))
    errors = f"[b red]{s.errors}[/]" if s.errors else "0"
    lagging = f"[yellow]{s.lagging}[/]" if s.lagging else "0"
    registered = f"[b]{s.registered:,}[/]/{s.total:,}"
    second = [Part(f"{registered} registered", f"{registered} reg"),
              neti, Part(f"reject_all on [b]{s.reject_on:,}[/]", f"RA on [b]{s.reject_on:,}[/]"),
              Part(f"{errors} errors", f"{errors} err"), Part(f"{lagging} lagging", f"{lagging} lag"),
              Part(f"guard {s.guard}", f"grd {s.guard}", 2),
              Part(f"no agent {s.no_agent}", f"no ag {s.no_agent}", 2),
              *attention_parts(s), *extra]
    if s.recording:  # the lab without root: say plainly that no firewall is being changed
        second.append(Part(f"[b yellow]{s.recording} agents only record rules (no kernel)[/]",
                           f"[b yellow]{s.recording} recording only[/]"))
    return first, second


def attention_parts(s: FleetSummary) -> list[Part]:
    """Hosts stuck until an operator acts, each with the key that gets them moving: shown only
    while there are any, never dropped on a narrow terminal (priority 0)."""
    parts = []
    if s.rolled_back:
        parts.append(Part(f"[b red]{s.rolled_back} rolled back[/] (o retries, c clears)",
                          f"[b red]{s.rolled_back} rolled back[/]"))
    if s.held_removals:
        parts.append(Part(f"[b magenta]guard holds {s.held_removals} removals[/] (M releases)",
                          f"[b magenta]{s.held_removals} held[/] (M)"))
    if s.pending_removals:
        parts.append(Part(f"[magenta]{s.pending_removals} leaving[/] (grace)",
                          f"[magenta]{s.pending_removals} leaving[/]"))
    if s.out_of_contact:
        parts.append(Part(f"[b yellow]{s.out_of_contact} out of contact[/]",
                          f"[b yellow]{s.out_of_contact} no contact[/]"))
    return parts


def overlay_figure(usage: OverlayUsage, *, short: bool = False) -> str:
    """``overlay 55 used · 65,479 free · 10 idle``; free turns red below 10 % (the alert's threshold).
    Idle: held by instances neither running nor live in Neti (``neti registry reclaim`` judges them).
    Short (a narrow terminal): ``ovl 55/65,479 free``."""
    free = usage.free
    colour = "b red" if free is not None and usage.total and free < usage.total * 0.10 else "b"
    if short:
        return f"ovl [b]{usage.used:,}[/]" + (f"/[{colour}]{free:,}[/] free" if free is not None else "")
    text = f"overlay [b]{usage.used:,}[/] used"
    if free is not None and usage.total:
        text += f" · [{colour}]{free:,}[/] free"
    if usage.idle:
        text += f" · [yellow]{usage.idle:,} idle[/]"
    return text


def overlay_part(usage: OverlayUsage) -> Part:
    """The overlay figure: dropped on a narrow terminal unless addresses are running out."""
    low = usage.free is not None and bool(usage.total) and usage.free < usage.total * 0.10
    return Part(overlay_figure(usage), overlay_figure(usage, short=True), 0 if low else 3)


class HeaderBar(Static):
    """k9s-like header: where we are, who we are, and the counts that matter during a migration.
    Each line fits the width it gets (``screens.fit``): parts abbreviate, then the least important go."""

    _shown = ""
    _lines: tuple[list[Part], list[Part]] = ([], [])

    def show(self, snapshot: FleetSnapshot, *, operator: str, readonly: bool,
             extra: Sequence[Part] = ()) -> None:
        self._lines = header_lines(snapshot, operator=operator, readonly=readonly,
                                   authenticated=context(self).authenticated, extra=extra)
        self._render_lines()

    def on_resize(self) -> None:
        self._render_lines()

    def _render_lines(self) -> None:
        width = self.content_size.width or self.app.size.width - 2
        text = "\n".join(fit_line(line, width) for line in self._lines)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # two lines, always: no layout pass for the whole screen


BANNER_PROBLEMS = 3  # bad documents named in the banner; the rest are counted
BANNER_TICK_SECONDS = 1.0


class ConnectionBanner(Static):
    """Shown only when something on screen cannot be trusted: ZooKeeper or the EC2 API unreachable
    (the data may be stale), the fleet still being read (with how much of it is in), or documents
    in ZooKeeper that do not decode (ignored, named here)."""

    _shown: str | None = None
    _snapshot: FleetSnapshot | None = None

    def on_mount(self) -> None:
        self.set_interval(BANNER_TICK_SECONDS, self._tick)  # "for N s" counts every second

    def _tick(self) -> None:
        if self._snapshot is not None and self.display:
            self.show(self._snapshot, context(self).now())

    def show(self, snapshot: FleetSnapshot, now: float) -> None:
        self._snapshot = snapshot
        problems = []
        zk = snapshot.zk
        if zk.state is not ZkState.CONNECTED:
            since = f" for {age(now - zk.since)}" if zk.since else ""
            if zk.state is ZkState.CONNECTING:
                problems.append(f"Connecting to ZooKeeper at {zk.hosts}…")
            else:
                problems.append(f"ZooKeeper {zk.state.value}: {zk.hosts}{since} — reconnecting; "
                                "data may be stale")
        elif zk.loading is not None:  # the first rows are up; the rest of the fleet is on its way
            problems.append(f"Reading the fleet from ZooKeeper: {zk.loading[0]:,} of {zk.loading[1]:,} "
                            "nodes; rows fill in as they arrive")
        ec2 = snapshot.ec2
        if ec2.configured and ec2.error:
            last = f"last good inventory {age(now - ec2.last_ok)} ago" if ec2.last_ok else "no inventory yet"
            problems.append(f"EC2 API: {ec2.error} — {last}; retrying")
        if snapshot.problems:
            more = len(snapshot.problems) - BANNER_PROBLEMS
            problems.append(f"Bad data in ZooKeeper, ignored ({len(snapshot.problems)}): "
                            + "; ".join(snapshot.problems[:BANNER_PROBLEMS])
                            + (f"; and {more} more" if more > 0 else ""))
        text = "\n".join(problems)
        if text != self._shown:
            self._shown = text
            self.update(text)
            self.display = bool(problems)


COMPACT_FOOTER_BELOW = 120


class FitFooter(Footer):
    """The key footer, compact (less padding) on a narrow terminal so more keys stay visible."""

    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < COMPACT_FOOTER_BELOW
