"""The results view (5): the `report` service's numbers for a run, as a table and text pictures."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from fceval_tui.ledger import Ledger
from fceval_tui.services.report import Group
from fceval_tui.ui.app import make_app
from fceval_tui.ui.screens.results import ResultsScreen, pass_rate_bar, pass_rate_text
from tests.helpers.ui import SIZE, Clock, fixed, seed, seed_graded

pytestmark = pytest.mark.usefixtures("utc")


@pytest.fixture
def make(state_dir, settings_factory, quiet_console):
    def build(seeder, theme: str | None = None):
        ledger = Ledger.open(state_dir, clock=Clock())
        seeder(ledger)
        application = make_app(settings_factory(), ledger, clock=fixed(), theme=theme)
        application.polling_enabled = False
        return application

    return build


def graded(tmp_path):
    return lambda ledger: seed_graded(ledger, tmp_path)


async def _settle(pilot) -> None:
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def _shown(app) -> str:
    console = Console(width=SIZE[0], record=True, file=io.StringIO())
    console.print(app.screen.query_one("#results", Static).content)
    return console.export_text()


def test_results_view(make, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)

    assert snap_compare(make(graded(tmp_path)), terminal_size=SIZE, run_before=before)


def test_results_view_light(make, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)

    assert snap_compare(make(graded(tmp_path), theme="fceval-light"), terminal_size=SIZE, run_before=before)


def test_results_view_cost_over_time(make, tmp_path, snap_compare):
    """Scrolled to the end: the run's cumulative cost against time."""

    async def before(pilot):
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)
        pilot.app.screen.query_one(VerticalScroll).scroll_end(animate=False)
        await pilot.pause(0.2)

    assert snap_compare(make(graded(tmp_path)), terminal_size=SIZE, run_before=before)


async def test_results_view_draws_the_cost_over_time_ending_at_the_total(make, tmp_path):
    app = make(graded(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)
        shown = _shown(app).splitlines()
    title = next(i for i, line in enumerate(shown) if line.startswith("Cost over time (cumulative, run r0graded)"))
    assert shown[title + 1].strip() == "$3.65 over 15:00"  # the sum of GRADED's costs, first start to last end
    top, bottom = shown[title + 2], shown[title + 8]
    assert top.startswith("  $3.65 ┤") and top.endswith("█") and bottom.startswith("  $0.00 ┼───")
    assert shown[title + 9].split() == ["0:00", "7:30", "15:00"]


async def test_results_of_the_highlighted_jobs_run_without_grading_reports(make):
    app = make(seed)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        assert app.screen.sub_title == "results of run r0demo01"
        shown = _shown(app)
        assert "harness_exit 1" in shown and "timeout 1" in shown


async def test_colon_results_jumps_to_the_view(make, tmp_path):
    app = make(graded(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("colon")
        await _settle(pilot)
        app.screen.query_one(Input).value = "results"
        await pilot.press("enter")
        await _settle(pilot)
        assert isinstance(app.screen, ResultsScreen)


async def test_results_without_runs(make):
    app = make(lambda ledger: None)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("5")
        await _settle(pilot)
        assert "No runs yet" in _shown(app)


def test_pass_rate_of_a_live_run_counts_finished_jobs_only():
    """Two of three jobs still running: 1 of 1 finished succeeded, not 1 of 3."""
    group = Group("aide", "gpt-4o", "", jobs=3, succeeded=1)
    assert pass_rate_text(group, "green", "red").plain.endswith("100% [21–100%]  2 not finished")
    waiting = Group("aide", "gpt-4o", "", jobs=2)
    assert pass_rate_text(waiting, "green", "red").plain == "no job finished yet (2 not finished)"


def test_pass_rate_bar_shows_rate_and_wilson_interval():
    bar = pass_rate_bar(8, 10, "green", "red")
    assert bar.plain == "████████████████▒▒▒░  80% [49–94%]"
