"""Snapshots of every view at 120x36 with a fixed clock and fixed data (pytest-textual-snapshot)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from fceval_tui.ui.app import make_app
from tests.helpers.ui import FOREIGN_INSTANCE, LIVE_SESSION, SIZE, fixed

pytestmark = pytest.mark.usefixtures("utc")


@pytest.fixture
def app(seeded_ledger, quiet_console, settings_factory):
    application = make_app(settings_factory(), seeded_ledger, clock=fixed())
    application.polling_enabled = False  # one load, then a still picture
    return application


async def _settle(pilot) -> None:
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def test_jobs_view(app, snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("down", "down", "down")  # the failed job: detail shows error and timeline
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_jobs_view_with_detail_and_filter(app, snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("d", "slash", *"state:failed,timed", "enter")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_resources_view(app, snap_compare):

    fake = [LIVE_SESSION, FOREIGN_INSTANCE]
    app.resource_listing = lambda: (fake, {"i-0abc123def4567890": "not in this ledger (run r0old)"}, [])

    async def before(pilot):
        await pilot.press("2")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_events_view(app, snap_compare):
    async def before(pilot):
        await pilot.press("3")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_launch_form_with_a_validation_error(app, snap_compare):
    async def before(pilot):
        await pilot.press("n")
        await _settle(pilot)
        pilot.app.screen.query_one("#task_ids", Input).value = "t1 t2"
        pilot.app.screen.query_one("#agent", Input).value = "aide"
        pilot.app.screen.query_one("#concurrent", Input).value = "-1"
        await pilot.press("ctrl+r")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_help_screen(app, snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("question_mark")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_attach_view(app, snap_compare, state_dir):
    import subprocess

    from fceval_tui.locations import tmux_socket_name
    from fceval_tui.ui.screens.attach import AttachScreen

    job = app.ledger.get_job("r0demo01-002")
    # A pane with fixed content under the job's session name, on the console's private socket.
    script = "printf 'step 1/3: reading the task\\nstep 2/3: \\033[32mtests pass\\033[0m\\nprogress 40%%\\r'; sleep 60"
    subprocess.run(
        [
            "tmux",
            "-L",
            tmux_socket_name(state_dir),
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            job.id,
            "-x",
            "100",
            "-y",
            "12",
            "sh",
            "-c",
            script,
        ],
        check=True,
    )

    async def before(pilot):
        await _settle(pilot)
        await pilot.app.push_screen(AttachScreen(job))
        for _ in range(100):
            lines = "\n".join(strip.text for strip in pilot.app.screen.query_one("#scrollback").lines)
            if "tests pass" in lines:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
