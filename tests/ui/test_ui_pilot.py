"""The console driven like a user would, against real tmux and a real ledger."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input

from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger
from fceval_tui.ui.app import make_app
from fceval_tui.ui.widgets.jobs_table import JobsTable
from tests.helpers.cli import REPO
from tests.helpers.ui import wait_for


@pytest.fixture
def console(state_dir, settings_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ledger = Ledger.open(state_dir)

    def make(**kwargs):
        return make_app(settings_factory(FCEVAL_CONCURRENT=4), ledger, **kwargs)

    yield make
    ledger.close()


async def test_launch_example_jobs_from_the_form_and_watch_them_finish(console):
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("n")
        form = app.screen
        form.query_one("#jobs", Input).value = str(REPO / "examples" / "jobs.csv")
        await pilot.click("#preview-btn")
        await wait_for(pilot, lambda: not form.query_one("#launch", Button).disabled)
        await pilot.click("#launch")
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: len(table.jobs) == 6)
        await wait_for(pilot, lambda: all(j.state.is_final for j in table.jobs.values()), timeout=60)
        states = {j.task_id: j.state for j in table.jobs.values()}
        assert states["always-fail-demo"] == JobState.FAILED
        assert states["hello-world"] == JobState.SUCCEEDED
        assert table.row_count == 6


async def test_form_refuses_bad_input_with_the_cli_message(console):
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("n")
        form = app.screen
        form.query_one("#jobs", Input).value = "/nonexistent/jobs.csv"
        await pilot.click("#preview-btn")
        await wait_for(pilot, lambda: "job file not found" in str(form.query_one("#errors").render()))
        assert form.query_one("#launch", Button).disabled
        assert form.query_one("#jobs", Input).has_class("-invalid")


async def test_cancel_a_running_job(console, settings_factory, state_dir):
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        settings = settings_factory(FCEVAL_RUN_COMMAND="sleep 30 # {task_id}", FCEVAL_GRADE_COMMAND="")
        from fceval_tui.domain.models import JobSpec

        app.launch(settings, [JobSpec("a", "long")])
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: any(j.state == JobState.RUNNING for j in table.jobs.values()))
        table.focus()
        await pilot.press("c")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: all(j.state == JobState.CANCELLED for j in table.jobs.values()))


async def test_readonly_hides_and_refuses_changes(console):
    app = console(readonly=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("n")
        assert app.screen.id != "launch" and not app.screen.query("#launch")
        assert not app.screen.check_action("cancel_job", ())
        assert "READ-ONLY" in app.screen.sub_title


async def test_switch_theme_and_broken_theme_file_falls_back(console, tmp_path):
    themes = tmp_path / "config" / "fceval-tui" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("name = 'broken'\nprimary = 'not-a-colour'\n")
    (themes / "mine.toml").write_text("name = 'mine'\nprimary = '#ff00ff'\ndark = false\n")
    app = console(theme="broken")
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause(0.2)
        assert app.theme == "fceval-dark"  # fallback, not a crash
        assert any("broken.toml" in n and "not a colour" in n for n in notes)
        assert any("theme 'broken' not found" in n for n in notes)
        for name in ("fceval-light", "fceval-high-contrast", "mine"):
            app.theme = name
            await pilot.pause(0.05)
            assert app.current_theme.name == name


async def test_filter_and_sort(console, ledger):
    from fceval_tui.domain.models import JobSpec

    ledger.create_run("local", 2, [JobSpec("aide", "t1"), JobSpec("biomni", "t2"), JobSpec("aide", "t3")])
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("slash", *"agent:aide", "enter")
        assert table.row_count == 2
        await pilot.press("slash", *"!t1", "enter")
        assert table.row_count == 2  # the filter replaces the previous one
        await pilot.press("escape")
        assert table.row_count == 3
        await pilot.press("slash", *"bogus:x", "enter")
        assert table.row_count == 3  # an invalid filter changes nothing


async def test_incremental_updates_touch_only_changed_rows(console, ledger):
    from fceval_tui.domain.models import JobSpec

    _, jobs = ledger.create_run("local", 2, [JobSpec("a", f"t{i}") for i in range(50)])
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 50)
        order = table.visible_ids
        before = table.lines_refreshed
        ledger.transition(jobs[7].id, JobState.STARTING, attempts=1)
        await wait_for(pilot, lambda: table.jobs[jobs[7].id].state == JobState.STARTING)
        assert table.lines_refreshed - before == 1  # one changed row merged, no rebuild
        assert table.visible_ids == order


async def test_attach_shows_live_output_and_control_sends_keys(console, settings_factory):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.ui.screens.attach import AttachScreen
    from fceval_tui.ui.widgets.pane_view import PaneView

    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        command = "echo ready-{task_id}; read answer; echo got-$answer; sleep 1"
        app.launch(settings_factory(FCEVAL_RUN_COMMAND=command, FCEVAL_GRADE_COMMAND=""), [JobSpec("a", "t")])
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: any(j.state == JobState.RUNNING for j in table.jobs.values()))
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, AttachScreen)
        log = app.screen.query_one(PaneView).query_one("#scrollback")

        def text():
            return "\n".join(strip.text for strip in log.lines)

        await wait_for(pilot, lambda: "ready-t" in text())
        await pilot.press("q")  # read-only: q is the app's quit binding, but with a running run it asks first
        await pilot.press("escape")
        assert isinstance(app.screen, AttachScreen)
        await pilot.press("ctrl+t")
        assert app.screen.control and app.screen.has_class("control")
        await pilot.press(*"yes", "q", "enter")  # in control mode q is just a key for the pane
        await wait_for(pilot, lambda: "got-yesq" in text())
        await pilot.press("ctrl+t")
        assert not app.screen.control
        await wait_for(pilot, lambda: [j.state for j in app.ledger.jobs()] == [JobState.SUCCEEDED])

        def actions():
            return [(e.kind, e.detail) for e in app.ledger.events() if e.kind.startswith("operator_")]

        await wait_for(pilot, lambda: len(actions()) == 3)
        (attach, by), (take, _), (give, detail) = [(kind, d) for kind, d in actions()]
        assert (attach, take, give) == ("operator_attach", "operator_take_control", "operator_give_back")
        assert "@" in by["by"] and detail["keys"] == 5 and detail["seconds"] >= 0  # a count, never the keys


async def test_attach_to_a_finished_job_shows_its_saved_output(console, settings_factory):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.ui.screens.attach import AttachScreen
    from fceval_tui.ui.widgets.pane_view import PaneView

    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        app.launch(
            settings_factory(FCEVAL_RUN_COMMAND="echo said-{task_id}", FCEVAL_GRADE_COMMAND=""), [JobSpec("a", "t")]
        )
        await wait_for(pilot, lambda: [j.state for j in app.ledger.jobs()] == [JobState.SUCCEEDED])
        await pilot.app.push_screen(AttachScreen(app.ledger.jobs()[0]))
        log = app.screen.query_one(PaneView).query_one("#scrollback")
        await wait_for(pilot, lambda: "said-t" in "\n".join(strip.text for strip in log.lines))
        assert "its saved output follows" in "\n".join(strip.text for strip in log.lines)


async def test_capital_r_retries_only_the_highlighted_jobs_error_class_cancelled_included(console, ledger):
    """`R` re-queues the run's unsuccessful jobs of the highlighted job's class, as `retry --error` does."""
    from fceval_tui.domain.models import JobSpec

    run, jobs = ledger.create_run("local", 1, [JobSpec("aide", f"t{i}") for i in range(1, 5)])
    for job, error_class in zip(jobs[:3], ("cancelled", "cancelled", "capacity"), strict=True):
        ledger.transition(job.id, JobState.STARTING, attempts=1)
        final = JobState.CANCELLED if error_class == "cancelled" else JobState.FAILED
        ledger.transition(job.id, final, error="x", error_class=error_class)
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        app.drive = lambda runner, run_id: None  # nothing runs the re-queued jobs here
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        assert table.selected.id == jobs[0].id
        await pilot.press("R")
        await pilot.pause(0.2)
    states = {job.id: ledger.get_job(job.id).state for job in jobs}
    assert states == {
        jobs[0].id: JobState.PENDING,
        jobs[1].id: JobState.PENDING,
        jobs[2].id: JobState.FAILED,
        jobs[3].id: JobState.PENDING,
    }
