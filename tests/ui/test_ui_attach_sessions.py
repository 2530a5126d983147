"""The attach view says why it cannot attach: the remote's words and the fix, in the pane and the
status line, within a few sessions (tests/helpers/session_user.py: sessions as another user)."""

from __future__ import annotations

from fceval_tui.backends.base import TmuxTarget
from fceval_tui.domain.models import JobSpec
from fceval_tui.ledger import Ledger
from fceval_tui.services.mirror.session_failure import STATUS_FIX
from fceval_tui.ui.app import make_app
from tests.helpers.session_user import SessionAsAnotherUser, session_user_tmpdir


class _Backend:
    def __init__(self, target: TmuxTarget) -> None:
        self.target = target

    def tmux_target(self, job) -> TmuxTarget:
        return self.target


async def test_attach_view_shows_why_sessions_fail(state_dir, settings_factory, monkeypatch, driven_pane):
    from fceval_tui.ui.screens import attach
    from fceval_tui.ui.widgets.pane_view import PaneView

    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    ledger = Ledger.open(state_dir)
    _run, [job] = ledger.create_run("local", 1, [JobSpec("a", "t")])
    app = make_app(settings_factory(), ledger)
    with session_user_tmpdir() as other:
        target = TmuxTarget(driven_pane.server.args, driven_pane.session, SessionAsAnotherUser(other))
        monkeypatch.setattr(attach, "make_backend", lambda name, settings: _Backend(target))
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.app.push_screen(attach.AttachScreen(job))
            screen = app.screen
            log = screen.query_one(PaneView).query_one("#scrollback")

            def shown() -> str:
                return " ".join(" ".join(strip.text for strip in log.lines).split())

            for _ in range(300):
                if "no sessions" in shown():
                    break
                await pilot.pause(0.1)
            assert "cannot attach: cannot open a session to the pane on sessions as another user" in shown()
            assert "no sessions" in shown() and STATUS_FIX.split(":")[0] in shown()
            assert screen.state_text.startswith("cannot attach: sessions to the pane fail")
    ledger.close()
