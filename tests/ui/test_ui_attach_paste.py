"""Pasting into a live pane from the attach view, with control taken: a file (F2, a path prompt), the
system clipboard (F3, through a clipboard reader on PATH), or the terminal's own paste. Real tmux, the
local transport narrowed to SSM's 32 KB of stdin per command so the chunked path and its progress run."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from textual import events
from textual.widgets import Input

from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger
from fceval_tui.transports.local import LocalTransport
from fceval_tui.ui.app import make_app
from fceval_tui.ui.screens.attach import AttachScreen
from fceval_tui.ui.widgets.jobs_table import JobsTable
from tests.ui.test_ui_pilot import wait_for

TEXT = "".join(f"pasted line {i} with 'quotes' and $dollars\n" for i in range(5000))  # ~219 kB


@pytest.fixture
def attached(state_dir, settings_factory, monkeypatch, tmp_path):
    """A console attached to a running local job whose pane writes what it receives to a file."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(LocalTransport, "max_stdin_bytes", property(lambda self: 32_000))
    progress: list[tuple[int, int, str | None]] = []
    record = AttachScreen.on_paste_progress

    def recorded(screen, message):
        progress.append((message.done, message.total, message.error))
        record(screen, message)

    monkeypatch.setattr(AttachScreen, "on_paste_progress", recorded)
    ledger = Ledger.open(state_dir)
    out = tmp_path / "received"
    settings = settings_factory(FCEVAL_RUN_COMMAND=f"stty -echo; cat > {out}", FCEVAL_GRADE_COMMAND="")

    async def start(app, pilot):
        app.launch(settings, [JobSpec("a", "t")])
        table = app.screen.query_one(JobsTable)
        await wait_for(pilot, lambda: any(j.state == JobState.RUNNING for j in table.jobs.values()))
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, AttachScreen)
        await wait_for(pilot, lambda: app.screen.mirror is not None)
        await pilot.press("ctrl+t")
        assert app.screen.control

    yield make_app(settings_factory(), ledger), start, out, progress
    ledger.close()


def _stop_runners(app) -> None:
    """The job's `cat` never ends: stop driving it, or the event loop's close waits for the runner."""
    for runner in app.runners.values():
        runner.stop()


def _pastes(ledger) -> list[dict]:
    return [e.detail for e in ledger.events() if e.kind == "operator_paste"]


async def _received(pilot, out, size: int) -> str:
    await wait_for(pilot, lambda: out.exists() and out.stat().st_size >= size)
    return out.read_text()


async def test_paste_a_file_in_chunks_with_progress_logged_once_as_size_and_hash(attached, tmp_path):
    app, start, out, progress = attached
    source = tmp_path / "prompt.txt"
    source.write_text(TEXT)
    total = len(TEXT.encode())
    async with app.run_test(size=(140, 40)) as pilot:
        await start(app, pilot)
        attach = app.screen
        await pilot.press("f2")
        app.screen.query_one(Input).value = str(source)
        await pilot.press("enter")
        assert await _received(pilot, out, total) == TEXT  # byte for byte
        await wait_for(pilot, lambda: len(_pastes(app.ledger)) == 1)
        await wait_for(pilot, lambda: attach.paste_text == f"pasted {total / 1000:.1f} kB")
        _stop_runners(app)
    assert progress == [(0, total, None)] + [(n, total, None) for n in range(32_000, total, 32_000)] + [
        (total, total, None)
    ]
    (logged,) = _pastes(app.ledger)
    assert logged["bytes"] == total and logged["sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert logged["source"] == "file" and "@" in logged["by"]
    assert "pasted line" not in str(app.ledger.events())  # never the content


async def test_paste_the_clipboard_through_the_reader_on_path(attached, tmp_path, monkeypatch):
    app, start, out, _progress = attached
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clip = tmp_path / "clipboard"
    clip.write_text("from the clipboard\n")
    reader = bin_dir / "pbpaste"  # the first reader looked for, whatever else this machine has
    reader.write_text(f"#!/bin/sh\n[ $# = 0 ] && exec cat {clip}\nexit 9\n")
    reader.chmod(reader.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    async with app.run_test(size=(140, 40)) as pilot:
        await start(app, pilot)
        await pilot.press("f3")
        assert await _received(pilot, out, len("from the clipboard\n")) == "from the clipboard\n"
        await wait_for(pilot, lambda: len(_pastes(app.ledger)) == 1)
        # The terminal's own paste (a bracketed paste event) goes the same way.
        app.screen.post_message(events.Paste("and from the terminal\n"))
        await wait_for(pilot, lambda: len(_pastes(app.ledger)) == 2)
        assert await _received(pilot, out, 41) == "from the clipboard\nand from the terminal\n"
        _stop_runners(app)
    assert [p["source"] for p in _pastes(app.ledger)] == ["clipboard", "terminal"]


def test_without_a_clipboard_reader_on_path_reading_it_is_a_user_error(tmp_path, monkeypatch):
    from fceval_tui.errors import UserError
    from fceval_tui.services.paste import clipboard_reader, read_clipboard

    monkeypatch.setenv("PATH", str(tmp_path))
    assert clipboard_reader() is None
    with pytest.raises(UserError, match=r"no clipboard reader found on this machine \(pbpaste, wl-paste"):
        read_clipboard()


async def test_without_a_clipboard_reader_the_view_says_so_and_nothing_is_sent(attached, monkeypatch):
    app, start, out, _progress = attached
    monkeypatch.setattr("fceval_tui.services.paste.clipboard_reader", lambda: None)
    notes: list[str] = []
    async with app.run_test(size=(140, 40)) as pilot:
        monkeypatch.setattr(app, "notify", lambda message, **_: notes.append(str(message)))
        await start(app, pilot)
        await pilot.press("f3")
        await wait_for(pilot, lambda: notes)
        _stop_runners(app)
    assert "no clipboard reader found on this machine (pbpaste, wl-paste, xclip, xsel)" in notes[0]
    assert _pastes(app.ledger) == [] and not (out.exists() and out.stat().st_size)


async def test_the_paste_keys_exist_only_with_control_taken(attached):
    app, start, _out, _progress = attached
    async with app.run_test(size=(140, 40)) as pilot:
        await start(app, pilot)
        assert app.screen.check_action("paste_file", ()) is True
        await pilot.press("ctrl+t")
        assert app.screen.check_action("paste_file", ()) is False
        await pilot.press("f2")  # read-only: no prompt
        assert isinstance(app.screen, AttachScreen)
        _stop_runners(app)
