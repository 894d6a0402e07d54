"""Pictures of the migration: progress bars of the fleet and sparklines of the last minutes."""

from __future__ import annotations

from textual.widgets import ProgressBar, Sparkline

from neti_core.fleet.trend import Trend
from screens.phases import PhasesScreen
from tests.fixtures.console import FIXED_NOW, pilot_test, wait_until


def test_a_trend_keeps_the_peak_of_each_bucket_and_holds_a_value_until_it_changes():
    trend = Trend(step=5, window=30)
    assert trend.values(100) == [] and trend.latest() == 0
    trend.observe(100, 3)
    trend.observe(101, 7)
    trend.observe(102, 1)  # the peak of the bucket stays: a spike is not lost between samples
    trend.observe(112, 0)
    assert trend.values(119) == [7, 7, 0, 0]
    assert trend.latest() == 0
    assert len(trend.values(1000)) == 6, "only the window is kept"
    assert trend.values(1000) == [0] * 6


@pilot_test
async def test_the_phases_view_draws_progress_bars_and_trends(console, seeder):
    seeder.seed(8)
    clock = [FIXED_NOW]
    app = console(clock=lambda: clock[0])
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, PhasesScreen)
                         and app.fleet.summary.registered == 8)
        screen = app.screen

        def percent(key: str) -> float | None:
            return screen.query_one(f"#bar-{key}", ProgressBar).percentage

        await wait_until(pilot, lambda: percent("sync") == 1.0, what="all 8 in sync")
        assert percent("reject") == 0.0
        clock[0] += 10
        for n in (1, 2, 3):
            seeder.publish(n, error="apply failed, previous rules kept")
        seeder.publish(4, reject_all=True, reject_all_source="fleet")
        await wait_until(pilot, lambda: percent("sync") == 5 / 8 and percent("reject") == 1 / 8,
                         what="3 in error, 1 under reject_all")
        clock[0] += 10
        seeder.publish(1, error=None)
        await wait_until(pilot, lambda: screen.query_one("#trend-errors", Sparkline).data[-1] == 2.0,
                         timeout=15, what="the error trend")
        errors = screen.query_one("#trend-errors", Sparkline).data
        assert errors[0] == 0.0 and 3.0 in errors and errors[-1] == 2.0, errors
        assert str(screen.query_one("#count-sync").render()) == "6/8"
