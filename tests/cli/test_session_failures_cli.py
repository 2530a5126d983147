"""`tail` and `attach` of a job whose sessions cannot reach its tmux say why on one line and exit 2,
within a few sessions (tests/helpers/session_user.py: sessions run as another user than commands)."""

from __future__ import annotations

import pytest

from fceval_tui.backends.base import TmuxTarget
from fceval_tui.cli import main
from fceval_tui.domain.models import Job
from fceval_tui.domain.states import JobState
from fceval_tui.services.mirror.session_failure import STATUS_FIX
from tests.helpers.session_user import SessionAsAnotherUser, session_user_tmpdir


@pytest.fixture
def unreachable_job(driven_pane, monkeypatch):
    """A job id whose target is a live pane that sessions cannot see."""
    with session_user_tmpdir() as other:
        transport = SessionAsAnotherUser(other)
        target = TmuxTarget(driven_pane.server.args, driven_pane.session, transport)
        running = Job("r0000000-001", "r0000000", 1, "a", "t", "", "", "local", JobState.RUNNING, attempts=1)
        for command in ("tail", "attach"):
            module = __import__(f"fceval_tui.cli.commands.{command}", fromlist=["job_target"])
            monkeypatch.setattr(module, "job_target", lambda settings, ledger, job_id: (running, target))
        yield transport


def test_tail_of_an_unreachable_session_exits_2_with_the_remotes_words(unreachable_job, state_dir, capsys):
    code = main(["--state-dir", str(state_dir), "tail", "r0000000-001"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("fceval-tui: error: cannot open a session to the pane on sessions as another user")
    assert "no sessions" in line and STATUS_FIX in line
    assert unreachable_job.sessions == 3


def test_attach_checks_before_handing_over_the_terminal(unreachable_job, state_dir, capsys, monkeypatch):
    import os

    def no_exec(*args):
        raise AssertionError(f"attach ran {args[1]} although sessions cannot reach the pane")

    monkeypatch.setattr(os, "execvpe", no_exec)
    code = main(["--state-dir", str(state_dir), "attach", "r0000000-001"])
    out, err = capsys.readouterr()
    assert code == 2, err
    [line] = err.strip().splitlines()
    assert "error connecting to" in line and STATUS_FIX in line  # tmux, as the session user
    assert unreachable_job.sessions == 3


def test_attach_from_the_cli_is_logged_with_the_operator_before_the_terminal_is_handed_over(
    driven_pane, ledger, state_dir, monkeypatch
):
    """The CLI's attach hands the terminal to tmux (exec): the one moment to log it is just before."""
    import os

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.transports.local import LocalTransport

    _run, [job] = ledger.create_run("local", 1, [JobSpec("a", "t")])
    target = TmuxTarget(driven_pane.server.args, driven_pane.session, LocalTransport())
    module = __import__("fceval_tui.cli.commands.attach", fromlist=["job_target"])
    monkeypatch.setattr(module, "job_target", lambda settings, ledger, job_id: (ledger.get_job(job_id), target))

    class HandedOver(Exception):
        pass

    def exec_tmux(*args):
        raise HandedOver(args[1])

    monkeypatch.setattr(os, "execvpe", exec_tmux)
    with pytest.raises(HandedOver):
        main(["--state-dir", str(state_dir), "attach", job.id])
    [event] = [e for e in ledger.events(run_id=job.run_id) if e.kind == "operator_attach"]
    assert event.job_id == job.id and event.detail["via"] == "cli" and event.detail["control"] is True
    assert event.detail["by"]
