"""The Preflight and Teardown screens: driven like a user would (real tmux, real ledger) and
snapshotted at 120x36 with fixed findings and a fixed plan."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta

import pytest
from textual.widgets import DataTable, Input

from fceval_tui.backends.base import Resource
from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger
from fceval_tui.locations import tmux_socket_name
from fceval_tui.services import teardown
from fceval_tui.services.audit import AuditReport, CheckEvent, list_checks
from fceval_tui.services.audit_checks import Finding, Severity
from fceval_tui.ui.app import make_app
from tests.helpers.ui import FOREIGN_INSTANCE, LIVE_SESSION, SIZE, T0, Clock, fixed, seed


async def wait_for(pilot, predicate, what: str, limit: float = 30.0):
    """Poll between frames; the limit only stops a broken screen from hanging the suite."""
    for _ in range(int(limit / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def sessions(state_dir) -> list[str]:
    proc = subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "ls", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return sorted(proc.stdout.split())


@pytest.fixture
def console(state_dir, settings_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ledger = Ledger.open(state_dir)
    yield lambda: make_app(settings_factory(), ledger)
    ledger.close()


async def test_orphan_notice_then_teardown_with_typed_confirmation(console, state_dir):
    app = console()
    run, jobs = app.ledger.create_run("local", 1, [JobSpec("aide", "t1")])
    app.ledger.transition(jobs[0].id, JobState.STARTING, resource_id=jobs[0].id, attempts=1)
    orphan = jobs[0].id  # a session whose run nobody drives: what a killed console leaves
    subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "new-session", "-d", "-s", orphan, "sleep 300"], check=True
    )
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: any("1 resource(s) left over" in n for n in notes), "the start-up notice")
        await pilot.press("T")
        screen = app.screen
        table = screen.query_one("#plan", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "the plan")
        assert "no live runner" in str(table.get_row_at(0)[7])
        await pilot.press("x")
        confirm = app.screen
        await wait_for(pilot, lambda: confirm.query("#typed"), "the confirmation")
        confirm.query_one("#typed", Input).value = "yes"  # not the run id: refused
        await pilot.press("enter")
        assert app.screen is confirm and sessions(state_dir) == [orphan]
        confirm.query_one("#typed", Input).value = run.id
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("nothing is left" in n for n in notes), "the teardown")
        assert sessions(state_dir) == []
        await wait_for(pilot, lambda: table.row_count == 0, "the refreshed plan")
        assert app.ledger.get_job(orphan).state is JobState.CANCELLED  # the ledger first


async def test_preflight_runs_the_local_checks_and_exports_them(console, state_dir):
    app = console()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("p")
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None, "the audit")
        assert [f.id for f in screen.report.findings] == ["local.tmux", "local.state-dir"]
        assert screen.query_one("#finding-table", DataTable).row_count == 2
        checks = screen.query_one("#checks", DataTable)
        assert [str(checks.get_cell(c.id, "status")) for c in list_checks("local")] == ["ok", "ok"]
        await pilot.press("e")
        await wait_for(pilot, lambda: list(state_dir.glob("preflight-local-*.json")), "the export")
        exported = json.loads(next(state_dir.glob("preflight-local-*.json")).read_text())
        assert [f["id"] for f in exported] == ["local.tmux", "local.state-dir"]


async def test_read_only_console_runs_a_read_only_audit(state_dir, settings_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    modes = []

    def recording_audit(settings, backend, on_progress=None, context=None, read_only=False):
        modes.append(read_only)
        return fake_audit(settings, backend, on_progress, context)

    monkeypatch.setattr("fceval_tui.ui.screens.preflight.run_audit", recording_audit)
    ledger = Ledger.open(state_dir)
    try:
        app = make_app(settings_factory(), ledger, readonly=True)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("p")
            await wait_for(pilot, lambda: app.screen.report is not None, "the audit")
    finally:
        ledger.close()
    assert modes == [True]


# -- snapshots -------------------------------------------------------------------------------------

SEVERITIES = [Severity.OK, Severity.ERROR, Severity.OK, Severity.WARNING, Severity.UNKNOWN, Severity.OK, Severity.INFO]


def fake_audit(settings, backend, on_progress=None, context=None, read_only=False):
    """Fixed findings for every check of the backend, reported through the same progress events."""
    findings = []
    for index, check in enumerate(list_checks(backend)):
        severity = SEVERITIES[index % len(SEVERITIES)]
        finding = Finding(
            check.id,
            check.area,
            severity,
            f"{check.title}: example {severity.value} finding",
            "what the check saw",
            "" if severity is Severity.OK else f"fix for {check.id}",
        )
        if on_progress:
            on_progress(CheckEvent(check, False))
            on_progress(CheckEvent(check, True, (finding,)))
        findings.append(finding)
    return AuditReport(backend, "us-east-1", tuple(findings))


def fake_plan(settings, ledger, scope, listing=None):
    items = [
        teardown.PlanItem(
            LIVE_SESSION,
            "destroy",
            "run r0demo01 has no live runner (its console was stopped or killed)",
            "running",
        ),
        teardown.PlanItem(
            FOREIGN_INSTANCE,
            "destroy",
            "not in this ledger (run r0old)",
        ),
        teardown.PlanItem(
            Resource(
                "s3",
                "staging-objects",
                "s3://my-staging/fceval-tui/staging/r0old/",
                "4 objects",
                "r0old",
                started_at=T0 - timedelta(hours=3),
            ),
            "destroy",
            "not in this ledger (run r0old)",
        ),
    ]
    live = Resource("local", "tmux-session", "r0live01-001", "running", "r0live01", "r0live01-001", started_at=T0)
    kept = [teardown.PlanItem(live, "keep", "run r0live01 is driven by process 4242")]
    listing = teardown.Listing(["local", "ec2"], [i.resource for i in items + kept], ["local", "ec2", "s3"])
    return teardown.Plan(scope, items, kept, ["r0demo01-002"], listing, T0 + timedelta(minutes=5))


@pytest.fixture
def snap_app(state_dir, settings_factory, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    monkeypatch.setattr("fceval_tui.ui.screens.preflight.run_audit", fake_audit)
    monkeypatch.setattr("fceval_tui.ui.screens.teardown.make_plan", fake_plan)
    monkeypatch.setattr("fceval_tui.services.teardown.find_orphans", lambda settings, ledger: [])
    ledger = Ledger.open(state_dir, clock=Clock())
    seed(ledger)
    application = make_app(settings_factory(), ledger, clock=fixed())
    application.polling_enabled = False
    return application


async def _settle(pilot) -> None:
    await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def test_preflight_screen(snap_app, snap_compare):
    async def before(pilot):
        await pilot.press("p")
        await _settle(pilot)
        await pilot.press("b")  # local -> ec2: every area
        await _settle(pilot)

    assert snap_compare(snap_app, terminal_size=SIZE, run_before=before)


def test_teardown_screen(snap_app, snap_compare):
    async def before(pilot):
        await pilot.press("T")
        await _settle(pilot)
        await pilot.press("down", "space")  # deselect the EC2 instance

    assert snap_compare(snap_app, terminal_size=SIZE, run_before=before)
