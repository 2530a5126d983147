"""The console at a common terminal size (80x30), driven like a user would, against a real ledger."""

from __future__ import annotations

from fceval_tui.ledger import Ledger
from fceval_tui.ui.app import make_app
from fceval_tui.ui.widgets.job_detail import JobDetail
from fceval_tui.ui.widgets.jobs_table import JobsTable
from tests.helpers.ui import text_of, wait_for

SMALL = (80, 30)


async def test_opening_the_detail_panel_shows_the_highlighted_job(seeded):
    async with seeded.run_test(size=SMALL) as pilot:
        table = seeded.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        detail = seeded.screen.query_one(JobDetail)
        await pilot.pause(0.5)  # the user looks at the table first
        await pilot.press("d")  # hidden at start below 150 columns
        await wait_for(pilot, lambda: "r0demo01-001" in text_of(detail.content))
        assert "No job selected" not in text_of(detail.content)
        await pilot.press("down")
        await wait_for(pilot, lambda: "r0demo01-002" in text_of(detail.content))


async def test_jobs_table_numbers_jobs_within_their_run_and_gives_the_width_to_the_task(seeded):
    async with seeded.run_test(size=SMALL) as pilot:
        table = seeded.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        header, first = table.render_line(0).text, table.render_line(1).text
        assert first.split()[0] == "001" and "r0demo01" not in first  # the run is named above the table
        assert "r0demo01" in text_of(seeded.screen.query_one("#runs").render())
        assert "polarishub/tdcommons" in first  # was cut to "polarishub/…" at 80 columns
        assert "Elapsed" in header and first.rstrip().endswith("1:35")  # nothing runs off the right edge


async def test_events_view_shows_which_job_each_event_is_about(seeded):
    from textual.widgets import DataTable

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState

    _, (job,) = seeded.ledger.create_run("local", 1, [JobSpec("dummy", "hello-world")])  # a real, 11-character run id
    seeded.ledger.transition(job.id, JobState.STARTING, attempts=1)
    async with seeded.run_test(size=SMALL) as pilot:
        await pilot.press("3")
        table = seeded.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count > 10)
        await pilot.pause(0.1)
        lines = [table.render_line(y).text for y in range(1, table.size.height)]
        failed = next(line for line in lines if "→ failed" in line)
        assert "r0demo01-004" in failed  # the job's number within its run, not cut off
        assert "biomni" in failed and "always-fail" in failed
        newest = next(line for line in lines if "→ starting" in line)
        assert job.id in newest and "dummy" in newest and "hello-world" in newest


async def test_saved_output_shows_carriage_returns_as_the_terminal_did(state_dir, settings_factory, monkeypatch):
    """A finished job's saved output: `\\r\\n` ends one line, a `\\r` rewrites it from column 0."""
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.ui.screens.attach import AttachScreen
    from fceval_tui.ui.widgets.pane_view import PaneView

    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    ledger = Ledger.open(state_dir)
    app = make_app(settings_factory(), ledger)
    # tmux's terminal turns each \n into \r\n; the progress bar rewrites itself with \r.
    script = r"printf 'one\n\rbar 10%%\rbar 100%%\nlong text here\rshort\n\033[32mtwo\033[0m\n' # {task_id}"
    async with app.run_test(size=(100, 30)) as pilot:
        app.launch(settings_factory(FCEVAL_RUN_COMMAND=script, FCEVAL_GRADE_COMMAND=""), [JobSpec("a", "t")])
        await wait_for(pilot, lambda: [j.state for j in ledger.jobs()] == [JobState.SUCCEEDED])
        expected = ["one", "bar 100%", "shorttext here", "two"]

        def shown(lines: list[str]) -> list[str]:
            start = lines.index("one") if "one" in lines else 0
            return lines[start : start + 4]

        await pilot.press("d")
        detail = app.screen.query_one(JobDetail)
        await wait_for(pilot, lambda: "two" in text_of(detail.content))
        assert shown([line.rstrip() for line in text_of(detail.content).splitlines()]) == expected

        await pilot.app.push_screen(AttachScreen(ledger.jobs()[0]))
        log = app.screen.query_one(PaneView).query_one("#scrollback")
        await wait_for(pilot, lambda: "two" in [strip.text.rstrip() for strip in log.lines])
        assert shown([strip.text.rstrip() for strip in log.lines]) == expected
    ledger.close()


def test_a_raw_line_is_drawn_like_a_terminal():
    from fceval_tui.ui.terminal_text import as_shown

    assert as_shown("\rprogress 10%\rprogress 100%\r").plain == "progress 100%"
    assert as_shown("working… 40%\r\x1b[Kdone").plain == "done"  # erase-in-line clears the rest
    coloured = as_shown("\x1b[1;36m[aide]\x1b[0m step 1\r\x1b[33m[b]")
    assert coloured.plain == "[b]de] step 1"
    assert [(s.start, s.end, str(s.style)) for s in coloured.spans] == [(0, 3, "color(3)"), (3, 6, "bold color(6)")]


async def test_demo_flow_attach_take_control_and_answer_the_agent(state_dir, settings_factory, monkeypatch):
    """What the demo shows: the first example job asks a question; attach, take control, answer it."""
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.ui.screens.attach import AttachScreen
    from fceval_tui.ui.widgets.pane_view import PaneView
    from tests.helpers.cli import FAST_RUN

    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    ledger = Ledger.open(state_dir)
    app = make_app(settings_factory(), ledger)
    # 6 s of work: half a second a step, and up to 6 s for the answer (the pilot types within one).
    settings = settings_factory(FCEVAL_RUN_COMMAND=FAST_RUN.replace("--seconds 0.3", "--seconds 6"))
    async with app.run_test(size=SMALL) as pilot:
        app.launch(settings, [JobSpec("dummy", "ask-the-operator"), JobSpec("aide", "t")])
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 2 and table.selected.state == JobState.RUNNING)
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, AttachScreen)
        log = app.screen.query_one(PaneView).query_one("#scrollback")

        def text() -> str:
            return "\n".join(strip.text for strip in log.lines)

        await wait_for(pilot, lambda: "which metric should I optimise?" in text())
        await pilot.press("ctrl+t", *"auc", "enter")
        await wait_for(pilot, lambda: "the operator says: auc" in text())
        assert "no answer" not in text()
        await pilot.press("ctrl+t", "escape")
        await wait_for(pilot, lambda: {j.state for j in ledger.jobs()} == {JobState.SUCCEEDED}, timeout=60)
    ledger.close()


async def test_a_long_audit_fix_is_wrapped_aligned_whole_and_copyable(seeded, monkeypatch):
    import json

    from textual.geometry import Region

    from fceval_tui.services.audit import AuditReport
    from fceval_tui.services.audit_checks import Finding, Severity

    document = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"] * 8}]})
    fix = f"aws iam put-role-policy --role-name fceval-batch --policy-name fceval-tui --policy-document '{document}'"
    finding = Finding("iam.role", "iam", Severity.ERROR, "role fceval-batch does not allow staging", "missing", fix)
    monkeypatch.setattr(
        "fceval_tui.ui.screens.preflight.run_audit",
        lambda settings, backend, on_progress=None, read_only=False: AuditReport(backend, "us-east-1", (finding,)),
    )
    async with seeded.run_test(size=SMALL) as pilot:
        await pilot.press("p")
        screen = seeded.screen
        await wait_for(pilot, lambda: screen.report is not None)
        await pilot.pause(0.2)
        shown = screen.query_one("#detail-fix")
        lines = [strip.text.rstrip() for strip in shown.render_lines(Region(0, 0, *shown.size))]
        assert len([line for line in lines if line]) > 2  # wrapped, not cut at the edge
        assert "".join(lines).replace(" ", "") == fix.replace(" ", "")  # whole, nothing cut off
        label = screen.query_one("#detail-fix-label")
        assert shown.region.x > label.region.x  # every wrapped line starts under the fix, right of its label
        assert shown.allow_select
        await pilot.press("y")
        assert seeded.clipboard == fix


async def test_a_changed_row_is_repainted_alone_and_at_once(state_dir, settings_factory, monkeypatch):
    """The table repaints one changed line (not the whole widget), and that repaint reaches the terminal."""
    from textual._compositor import ChopsUpdate

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState

    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    ledger = Ledger.open(state_dir)
    _, jobs = ledger.create_run("local", 1, [JobSpec("a", f"t{i}") for i in range(30)])
    app = make_app(settings_factory(), ledger)
    sent: list[dict[int, str]] = []  # per partial update: screen line -> text sent
    display = app._display

    def spy(screen, renderable):
        if isinstance(renderable, ChopsUpdate):
            texts = ("".join(strip.text for strip in chop.values() if strip) for chop in renderable.chops)
            sent.append({y: text for y, text in enumerate(texts) if text})
        return display(screen, renderable)

    app._display = spy
    async with app.run_test(size=SMALL) as pilot:
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 30)
        await pilot.pause(0.3)
        sent.clear()
        ledger.transition(jobs[7].id, JobState.CANCELLED)  # pending -> cancelled: nothing else on screen changes
        await wait_for(pilot, lambda: any("cancelled" in text for update in sent for text in update.values()))
        update = next(u for u in sent if any("cancelled" in text for text in u.values()))
        row_y = table.region.y + 1 + 7  # below the header
        assert "cancelled" in update[row_y] and "008" in update[row_y]
        assert not any(y in update for y in range(table.region.y + 1, table.region.bottom) if y != row_y)
        sent.clear()
        await pilot.press("down")  # the cursor leaves row 0 for row 1: those two lines are repainted
        first = table.region.y + 1
        await wait_for(pilot, lambda: any(first + 1 in update for update in sent))
        table_lines = set().union(*sent) & set(range(first, table.region.bottom))
        assert table_lines == {first, first + 1}


async def test_help_shows_the_keys_as_remapped(state_dir, settings_factory, monkeypatch, tmp_path):
    from fceval_tui.ui.screens.modals import HelpScreen

    config = tmp_path / "config"
    (config / "fceval-tui").mkdir(parents=True)
    (config / "fceval-tui" / "keymap.toml").write_text('[keys]\n"jobs.cancel" = "x"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    ledger = Ledger.open(state_dir)
    app = make_app(settings_factory(), ledger)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = {binding_id: key for key, _, binding_id in app.screen.rows}
        assert rows["jobs.cancel"] == "x"
    ledger.close()


async def test_a_paused_job_and_why_show_in_the_table_and_the_run_header(seeded):
    reason = "AWS credentials expired: run `aws sso login --profile eval`"
    async with seeded.run_test(size=SMALL) as pilot:
        table = seeded.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        seeded.ledger.update("r0demo01-002", paused=reason)  # what the runner's credential gate writes
        await wait_for(pilot, lambda: "⏸ paused (running)" in table.render_line(2).text)
        await wait_for(pilot, lambda: reason in text_of(seeded.screen.query_one("#runs").render()))
        seeded.ledger.update("r0demo01-002", paused=None)  # resumed
        await wait_for(pilot, lambda: "▶ running" in table.render_line(2).text)
        await wait_for(pilot, lambda: "paused" not in text_of(seeded.screen.query_one("#runs").render()))


async def test_a_confirmation_shows_its_whole_question(seeded):
    """The quit question ("… Running tmux sessions go on; pending jobs wait …") was cut at the dialog's edge."""
    from textual.widgets import Label

    from fceval_tui.ui.screens.modals import ConfirmScreen

    question = "1 run(s) are being driven by this console. Quit anyway? " + "Running tmux sessions go on. " * 4
    async with seeded.run_test(size=SMALL) as pilot:
        seeded.push_screen(ConfirmScreen(question, "Quit"))
        await wait_for(pilot, lambda: isinstance(seeded.screen, ConfirmScreen))
        await pilot.pause()
        label = seeded.screen.query_one(Label)
        assert label.region.right <= label.parent.content_region.right  # wrapped inside the dialog, not cut
        lines = [label.render_line(y).text.strip() for y in range(label.size.height)]
        assert " ".join(lines).split() == question.split()
