"""The console's exec (on the jobs view's selection) and its port forwards, on the SSM doubles."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from fceval_tui.ledger import Ledger
from fceval_tui.presentation import render_exec
from fceval_tui.ui.app import make_app
from fceval_tui.ui.screens.fleet import ExecScreen, ForwardsScreen
from fceval_tui.ui.screens.modals import ConfirmScreen
from tests.helpers.fleet import GREETING, echo_server, is_free, running_jobs, talk
from tests.helpers.ui import text_of, wait_for


async def test_exec_runs_on_the_filtered_jobs_and_shows_the_grouped_answers(
    aws_env, aws_settings, ssm_fleet, state_dir, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ledger = Ledger.open(state_dir)
    jobs = running_jobs(aws_env, ledger, 4)
    (ssm_fleet.instance_dir(jobs[3].resource_id) / "broken").touch()
    app = make_app(aws_settings(), ledger)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.table.row_count == 4)
        await pilot.press("slash")
        app.screen.query_one("#filter", Input).value = "task:t00,t01,t03"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.table.row_count == 3)
        await pilot.press("X")
        assert isinstance(app.screen, ExecScreen) and len(app.screen.jobs) == 3
        exec_screen = app.screen
        exec_screen.query_one("#command", Input).value = "test -e broken && exit 3; echo fine"
        await pilot.press("enter")
        # It runs as root on every machine: the console asks first, and Back sends nothing.
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "machines of 3 jobs" in app.screen.question and "echo fine" in app.screen.question
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is exec_screen)
        assert ssm_fleet.sends == [] and not exec_screen.query_one("#command", Input).disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#yes")
        await wait_for(pilot, lambda: exec_screen.report is not None)
        shown = text_of(render_exec(exec_screen.report))
        assert "2 instances: ok" in shown and "fine" in shown
        assert f"1 instance: exit 3  {jobs[3].resource_id}" in shown
    [call] = ssm_fleet.sends
    assert sorted(call) == sorted(j.resource_id for j in (jobs[0], jobs[1], jobs[3]))
    [event] = [e for e in ledger.events() if e.kind == "operator_exec"]
    assert event.detail["targets"][jobs[3].resource_id] == 3 and "matching" in event.detail["scope"]
    ledger.close()


async def test_the_console_lists_its_forwards_closes_them_and_none_outlive_it(
    aws_env, aws_settings, ssm_sessions, state_dir, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ledger = Ledger.open(state_dir)
    [job] = running_jobs(aws_env, ledger, 1)
    app = make_app(aws_settings(), ledger)
    with echo_server() as remote_port:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.screen.table.selected is not None)
            for count in (1, 2):
                await pilot.press("F")
                assert isinstance(app.screen, ForwardsScreen)
                app.screen.query_one("#port", Input).value = str(remote_port)
                await pilot.press("enter")
                await wait_for(pilot, lambda n=count: app.screen.query_one(DataTable).row_count == n)
                await pilot.press("escape")
            first, second = app.forwards.list()
            assert talk(first.local_port, b"via the console") == GREETING + b"via the console"
            await pilot.press("F")
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 2)
            table.focus()
            await pilot.press("x")  # closes the highlighted (first) one
            await wait_for(pilot, lambda: table.row_count == 1)
            assert is_free(first.local_port) and [f.id for f in app.forwards.list()] == [second.id]
        # The console has exited with a forward open: it is closed with it.
        assert app.forwards.list() == [] and is_free(second.local_port)
    closes = [
        e.detail["reason"] for e in ledger.events() if e.kind == "operator_forward" and e.detail["action"] == "close"
    ]
    assert closes == ["closed in the console", "console exit"]
    ledger.close()
