"""Migration progress as pictures: how much of the fleet is in Neti, in sync, under reject_all
(bars), and how convergence and errors moved over the last minutes (sparklines)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Sparkline

from neti_core.fleet import FleetSnapshot
from neti_core.fleet.trend import WINDOW_SECONDS, FleetTrends

BARS = (("neti", "in Neti"), ("sync", "in sync"), ("reject", "reject_all on"))


def progress_counts(snapshot: FleetSnapshot) -> dict[str, tuple[int, int]]:
    """(done, of) for each bar: running instances registered; members whose agent has applied the
    current membership; members whose agent applies reject_all."""
    s = snapshot.summary
    known = s.registered + s.unregistered if s.inventory_known else s.registered
    return {"neti": (s.registered, known), "sync": (s.in_sync, s.registered),
            "reject": (s.reject_on, s.registered)}


class MigrationProgress(Vertical):
    """Three bars and two sparklines; ``show`` updates them from a snapshot and the app's trends."""

    def compose(self) -> ComposeResult:
        for key, label in BARS:
            with Horizontal(classes="bar-row"):
                yield Label(label, classes="bar-label")
                yield ProgressBar(total=1, show_eta=False, id=f"bar-{key}")
                yield Label("", id=f"count-{key}", classes="bar-count")
        with Horizontal(classes="bar-row"):
            yield Label("lagging", classes="bar-label")
            yield Sparkline([], summary_function=max, id="trend-lagging")
            yield Label("", id="now-lagging", classes="trend-now")
            yield Label("errors", classes="bar-label")
            yield Sparkline([], summary_function=max, id="trend-errors")
            yield Label("", id="now-errors", classes="trend-now")

    def show(self, snapshot: FleetSnapshot, trends: FleetTrends, now: float) -> None:
        for key, (done, of) in progress_counts(snapshot).items():
            # total 0 would make the bar "indeterminate" (animated): an empty fleet is 0 of 1
            self.query_one(f"#bar-{key}", ProgressBar).update(total=max(of, 1), progress=done)
            self.query_one(f"#count-{key}", Label).update(f"{done:,}/{of:,}")
        minutes = f"{WINDOW_SECONDS / 60:g} min"
        for key, trend in (("lagging", trends.not_converged), ("errors", trends.errors)):
            values = [float(v) for v in trend.values(now)]
            # Textual draws a single value as a full-height bar; one sample is a flat line so far
            self.query_one(f"#trend-{key}", Sparkline).data = values * 2 if len(values) == 1 else values
            self.query_one(f"#now-{key}", Label).update(f"{trend.latest()} ({minutes})")
