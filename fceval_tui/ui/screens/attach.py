"""Attach view: the job's tmux pane mirrored live, read-only until the user takes control. With control
taken, keys go to the pane, and so does pasted text: the terminal's own paste, a file, or the system
clipboard, each through the transport's chunked input path with its progress shown."""

from __future__ import annotations

import queue
import subprocess
import time
from functools import partial

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from fceval_tui.backends import make_backend
from fceval_tui.backends.base import TmuxTarget
from fceval_tui.domain.models import Job
from fceval_tui.errors import BackendError, UserError
from fceval_tui.services.operator import STS_WAIT, identity, start_lookup
from fceval_tui.services.paste import paste_detail, read_clipboard, read_paste_file
from fceval_tui.services.runner import run_settings
from fceval_tui.ui.messages import PaneAttached, PaneUpdate, PasteProgress
from fceval_tui.ui.screens.paste_path import PastePathScreen
from fceval_tui.ui.terminal_text import as_shown
from fceval_tui.ui.widgets.pane_view import PaneView
from fceval_tui.ui.workers import ReportWorkerErrors

# Textual key name -> tmux key name, for keys that are not plain characters.
TMUX_KEYS = {
    "enter": "Enter",
    "tab": "Tab",
    "backspace": "BSpace",
    "delete": "DC",
    "escape": "Escape",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "home": "Home",
    "end": "End",
    "pageup": "PPage",
    "pagedown": "NPage",
    "space": "Space",
}
CONTROL_TOGGLE = "ctrl+t"
# In control mode every other key belongs to the pane; these (which tmux_key does not send) do not.
PASTE_FILE, PASTE_CLIPBOARD = "f2", "f3"
CONTROL_ONLY = ("paste_file", "paste_clipboard")


def tmux_key(event: events.Key) -> tuple[str, bool] | None:
    """(key, literal) for tmux send-keys, or None when the key has no tmux meaning."""
    if event.key in TMUX_KEYS:
        return TMUX_KEYS[event.key], False
    if event.key.startswith("ctrl+") and len(event.key) == 6:
        return "C-" + event.key[-1], False
    if event.character and event.is_printable:
        return event.character, True
    return None


class AttachScreen(ReportWorkerErrors, Screen):
    DEFAULT_CSS = """
    AttachScreen #status { height: 1; padding: 0 1; background: $panel; }
    AttachScreen.control #status { background: $error; color: $text; text-style: bold; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="attach.back"),
        Binding(CONTROL_TOGGLE, "toggle_control", "Take control", id="attach.control", priority=True),
        Binding("f", "full_screen", "Screen only", id="attach.full"),
        Binding("A", "interactive", "Interactive attach", id="attach.interactive"),
        Binding(PASTE_FILE, "paste_file", "Paste file", id="attach.paste_file", priority=True),
        Binding(PASTE_CLIPBOARD, "paste_clipboard", "Paste clipboard", id="attach.paste_clipboard", priority=True),
    ]

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self.target: TmuxTarget | None = None
        self.mirror = None
        self.control = False
        self.state_text = "connecting…"
        self.paste_text = ""
        # One sender thread drains this queue so keystrokes and pastes reach the pane in the order given:
        # ("key", key, literal) or ("paste", text, source).
        self._input: queue.Queue[tuple[str, str, bool | str] | None] = queue.Queue()
        self._sender_started = False
        self._keys_sent = 0
        self._control_since = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="status")
        yield PaneView()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.job.id}  {self.job.agent} / {self.job.task_id}"
        self._status()
        self._follow()
        start_lookup(self.app.settings, [self.job.backend])  # returns at once: the ARN is looked up behind
        self._log("operator_attach")

    def on_unmount(self) -> None:
        if self.control:
            self._give_back()
        self._input.put(None)
        if self.mirror is not None:
            self.mirror.close()

    @work(thread=True, exclusive=True, group="attach", exit_on_error=False)
    def _follow(self) -> None:
        """Find the job's pane (building a cloud backend means AWS clients: not on the event loop),
        then mirror it, or show the logs of a backend without tmux."""
        from fceval_tui.services.mirror import Mirror

        settings = run_settings(self.app.settings, self.app.ledger.get_run(self.job.run_id))
        backend = make_backend(self.job.backend, settings)
        target = backend.tmux_target(self.job)
        if target is None:
            note = f"{self.job.backend} jobs have no tmux session to attach to; their logs are shown instead"
            self._show_logs(backend, note)
            return
        worker = get_current_worker()
        mirror = Mirror(target.transport, target.tmux_args, target.session, from_start=True)
        self.post_message(PaneAttached(target, mirror))
        try:
            with mirror:
                for update in mirror:
                    if worker.is_cancelled:
                        break
                    self.post_message(
                        PaneUpdate(
                            update.lines,
                            update.gap_text(),
                            update.screen,
                            update.ended,
                            update.reconnecting,
                            update.session_failure,
                        )
                    )
        except UserError as exc:
            if self.job.state.is_final:  # its session was cleaned up: show what it printed instead
                self._show_logs(backend, "the job has ended and its tmux session is gone; its saved output follows")
            else:
                self.post_message(PaneUpdate([], None, None, True, False, f"cannot attach: {exc}"))

    def _show_logs(self, backend, note: str) -> None:
        try:
            lines = backend.log_lines(self.job)
        except (UserError, BackendError) as exc:
            self.post_message(PaneUpdate([], f"{note}; cannot read them: {exc}", None, True, False))
            return
        self.post_message(PaneUpdate([as_shown(line) for line in lines], note, None, True, False))

    def on_pane_attached(self, message: PaneAttached) -> None:
        self.target = message.target
        self.mirror = message.mirror
        if not self.is_mounted:  # left before the pane was found
            message.mirror.close()

    def on_pane_update(self, message: PaneUpdate) -> None:
        view = self.query_one(PaneView)
        for notice in (message.notice, message.trouble):
            if notice:
                view.add_notice(notice)
        if message.lines:
            view.add_lines(message.lines)
        if message.screen is not None:
            view.show_screen(message.screen)
        if message.trouble:
            given_up = "cannot attach" if message.ended else "cannot attach yet, retrying"
            self.state_text = f"{given_up}: sessions to the pane fail (why, and the fix, below)"
        elif message.ended:
            self.state_text = "ended: the pane's process exited or the session is gone"
        elif message.reconnecting:
            self.state_text = "reconnecting…"
        else:
            self.state_text = "live"
        self._status()

    def _status(self) -> None:
        mode = (
            f"CONTROL: keys go to the pane ({CONTROL_TOGGLE} to give back)"
            if self.control
            else f"READ-ONLY ({CONTROL_TOGGLE} to take control)"
        )
        self.query_one("#status", Static).update(Text(f"{mode}   {self.state_text}   {self.paste_text}".rstrip()))
        self.set_class(self.control, "control")

    # -- actions ------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_full_screen(self) -> None:
        self.query_one(PaneView).toggle_full()

    def action_toggle_control(self) -> None:
        if self.app.readonly:
            self.notify("read-only console: taking control is disabled", severity="warning")
            return
        if self.target is None or self.mirror is None:
            return
        if self.control:
            self._give_back()
        else:
            self._keys_sent, self._control_since = 0, time.monotonic()
            self._log("operator_take_control")
        self.control = not self.control
        if self.control and not self._sender_started:
            self._sender_started = True  # one sender for the screen's life: keystrokes stay in order
            self._sender()
        self._status()
        self.refresh_bindings()  # the paste keys exist only in control mode

    def _give_back(self) -> None:
        # How many keys and for how long, never which keys.
        seconds = round(time.monotonic() - self._control_since, 1)
        self._log("operator_give_back", keys=self._keys_sent, seconds=seconds)

    def _log(self, kind: str, **detail: object) -> None:
        """Record an operator action in the ledger, with who did it (off the event loop)."""
        record = partial(self._record, kind, STS_WAIT, **detail)
        self.run_worker(record, thread=True, group="attach-log", exit_on_error=False)

    def _record(self, kind: str, wait: float = 0.0, **detail: object) -> None:
        self.app.ledger.record(self.job.run_id, self.job.id, kind, by=identity(wait), **detail)

    def action_interactive(self) -> None:
        if self.target is None:
            return
        from fceval_tui.services.mirror.tail import attach_argv, attach_env

        argv = attach_argv(self.target.tmux_args, self.target.session, self.target.transport)
        with self.app.suspend():
            print(f"attaching to {self.job.id}: detach with the tmux prefix then d to come back", flush=True)
            subprocess.run(argv, check=False, env=attach_env())
        self.refresh()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in CONTROL_ONLY:
            return self.control
        return not (self.app.readonly and action in ("toggle_control", "interactive"))

    def action_paste_file(self) -> None:
        self.app.push_screen(PastePathScreen(), self._paste_file)

    def _paste_file(self, path: str | None) -> None:
        if path:
            self._read_then_paste(partial(read_paste_file, path), "file")

    def action_paste_clipboard(self) -> None:
        self._read_then_paste(read_clipboard, "clipboard")

    @work(thread=True, group="attach-read", exit_on_error=False)
    def _read_then_paste(self, read, source: str) -> None:
        """Read the text off the event loop (a UserError is notified), then queue it for the sender."""
        text = read()
        if text and self.control:
            self._input.put(("paste", text, source))

    async def on_key(self, event: events.Key) -> None:
        # In control mode every key belongs to the pane (except the toggle, a priority binding).
        if not self.control or self.mirror is None:
            return
        key = tmux_key(event)
        if key is not None:
            event.stop()
            event.prevent_default()
            self._keys_sent += 1
            self._input.put(("key", *key))

    @on(events.Paste)
    def _paste(self, event: events.Paste) -> None:
        """The terminal's bracketed paste (its own paste key): in control mode it goes to the pane."""
        if self.control and self.mirror is not None:
            event.stop()
            self._input.put(("paste", event.text, "terminal"))

    def on_paste_progress(self, message: PasteProgress) -> None:
        size = f"{message.total / 1000:.1f} kB"
        if message.error:
            self.paste_text = f"paste of {size} failed: {message.error}"
            self.notify(self.paste_text, title="Paste", severity="error", timeout=10)
        elif message.done < message.total:
            self.paste_text = f"pasting {message.done / 1000:.1f}/{size} ({message.done / message.total:.0%})"
        else:
            self.paste_text = f"pasted {size}"
        self._status()

    @work(thread=True, exclusive=True, group="attach-input", exit_on_error=False)
    def _sender(self) -> None:
        while (item := self._input.get()) is not None:
            kind, data, extra = item
            if kind == "paste":
                self._send_paste(data, str(extra))
            else:
                self.mirror.send_keys(data, literal=bool(extra))

    def _send_paste(self, text: str, source: str) -> None:
        """Paste through the mirror (chunked where the transport needs it), then log it once, as its size
        and hash. A failed paste is shown, and the sender carries on with the keys after it."""
        total = len(text.encode())
        self.post_message(PasteProgress(0, total))
        try:
            self.mirror.paste(text, progress=lambda done, all_: self.post_message(PasteProgress(done, all_)))
        except (UserError, BackendError, TimeoutError) as exc:
            self.post_message(PasteProgress(0, total, str(exc)))
            return
        self._record("operator_paste", source=source, **paste_detail(text))
