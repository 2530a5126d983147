"""Streaming: the mirror over one `tmux -C attach` control client (transports that can hold a stream).

`%output` notifications run through a line model (control_mode.LineAssembler), so every byte is
seen and the mode is exact, whatever the history limit. The screen and a position fix are read
through the same control channel, whose replies are ordered with the output.

Attach order: the first read (the baseline snapshot) is sent only once tmux reports the client
attached (`%session-changed`), since tmux may run commands from the client's stdin before
attach-session has completed; output before the baseline's reply is in the baseline, output after
it is in the stream. A dropped stream reconnects and resumes after the last line delivered, without
duplicates; what happened while disconnected is read back the polling way (a full-window snapshot
compared with the lines streamed since the last position fix), with polling's limits. A `clear`
seen in the stream is itself a position fix (the pane is then empty); other output that moves rows
(cursor addressing, erasing the display) makes a reconnect before the next fix report itself inexact.

A session that ends before tmux attached is a failed attempt: what it printed (the aws CLI's error,
the plugin's, tmux's "can't find session") is classified (session_failure.py). Once the same failure
repeats, the mirror says so in `session_failure` while it keeps retrying, or, when retrying cannot
help, raises SessionError; `start()` returns once a failure has been told, so the caller can show it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from fceval_tui.errors import TransientError
from fceval_tui.services.mirror.control_mode import Block, LineAssembler, Notice, Output
from fceval_tui.services.mirror.model import ANCHOR_ROWS, Step, overlap
from fceval_tui.services.mirror.session_failure import FailureStreak, SessionError, SessionFailure, classify
from fceval_tui.services.mirror.snapshot import (
    DEAD_NOTICE,
    FULL,
    Inconsistent,
    PaneGone,
    PaneInfo,
    Snapshot,
    window_commands,
)
from fceval_tui.services.mirror.strategy import MirrorStrategy
from fceval_tui.services.mirror.tmux_io import ControlLink, TmuxCli
from fceval_tui.transports.retry import RetryPolicy

log = logging.getLogger(__name__)

SYNC_LINES = 100
ATTEMPT_OUTPUT = 4096  # bytes kept of what a failed session printed


class StreamingMirror(MirrorStrategy):
    """Follows the pane's output as tmux sends it, fixing its position every `check_interval` seconds
    (every `screen_interval` while output arrives and the screen is wanted)."""

    def __init__(
        self,
        tmux: TmuxCli,
        pane: PaneInfo,
        closing: threading.Event,
        *,
        from_start: bool,
        want_screen: bool,
        screen_interval: float,
        check_interval: float,
        retry_policy: RetryPolicy,
    ) -> None:
        super().__init__(tmux, pane, closing, from_start=from_start, want_screen=want_screen)
        self.screen_interval = screen_interval
        self.check_interval = check_interval
        self.retry_policy = retry_policy
        self._link: ControlLink | None = None
        self._assembler = LineAssembler(pane.width)
        self._discard = True  # output already reflected in the baseline snapshot
        # Lines streamed since the tracker's frontier was last fixed (skipped once after a reconnect).
        self._since_sync: deque[str] = deque(maxlen=100_000)
        # Output since then moved rows (cursor addressing, an erase): the pane's rows after the
        # frontier no longer follow `_since_sync`, until the next position fix.
        self._rows_moved = False
        self._dirty = False
        self._last_sync = 0.0
        self._reconnects = 0
        self._old_link_bytes = 0
        self._baseline_rows = ANCHOR_ROWS + 8
        self._baseline_sent = False
        self._saw_exit = False  # tmux said goodbye: all output before it has been delivered
        self._attempt_output = bytearray()  # what this session printed before tmux attached
        self._streak = FailureStreak()
        self._told: SessionFailure | None = None

    def start(self) -> None:
        self._connect(baseline_full=self.from_start)
        self._await_baseline()

    def close(self) -> None:
        if self._link is not None:
            self._link.stream.close()

    @property
    def in_sync(self) -> bool:
        return not self._discard

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def bytes_streamed(self) -> int:
        return (self._link.bytes_read if self._link else 0) + self._old_link_bytes

    def _connect(self, baseline_full: bool) -> None:
        argv = self.tmux.argv("-C", "attach-session", "-t", self.session_id, "-f", "ignore-size")
        if self._link is not None:
            self._old_link_bytes += self._link.bytes_read
        self._link = ControlLink(self.tmux.transport.open_stream(argv))
        self._discard = True
        self._saw_exit = False
        # The baseline is sent once tmux reports the client attached (%session-changed): tmux may
        # run commands read from stdin before the attach completes, and output in between would
        # be in neither the baseline nor the stream.
        self._baseline_rows = FULL if baseline_full else ANCHOR_ROWS + 8
        self._baseline_sent = False
        self._attempt_output.clear()
        self._last_sync = time.monotonic()

    def _await_baseline(self) -> None:
        """Block until the control client is attached and its first snapshot read, so that
        everything the pane prints after start() returns is captured."""
        deadline = time.monotonic() + self.tmux.timeout
        while self._discard and not self.ended and not self.pending.session_failure:
            if time.monotonic() > deadline:
                raise TransientError(f"tmux control mode on {self.tmux.transport.describe()} did not answer")
            assert self._link is not None
            events = self._link.read(0.05)
            if events is None:
                self._on_stream_end()
                continue
            for event in events:
                self._on_event(event)

    def _on_baseline(self, blocks: list[Block]) -> None:
        snap = self._snap_from(blocks)
        log.debug("baseline for %s: %s", self.pane_id, snap and (snap.info, len(snap.spans)))
        if snap is None:
            if not self.ended and self._link is not None:  # an unusable snapshot: read it again
                self._link.send(window_commands(self.pane_id, FULL), self._on_baseline)
            return
        if self.tracker.frontier is None and not self.from_start:
            self.tracker.reset_to(snap)
        else:
            step = self.tracker.advance(snap)
            if isinstance(step, int):  # cannot happen with a full window; resync rather than guess
                log.warning("baseline window too small; resyncing at the cursor")
                self.tracker.reset_to(snap)
                step = Step([], 0, False)
            # Rows moved since the last fix: where the streamed lines are in the pane is a guess.
            exact = step.exact and not self._rows_moved
            lines = step.lines[overlap(list(self._since_sync), step.lines, step.gap == 0 and exact) :]
            self.pending.add(Step(lines, step.gap, exact))
        self._since_sync.clear()
        self._rows_moved = False
        text, col = snap.partial()
        self._assembler.width = snap.info.width
        self._assembler.alt_screen = snap.info.alt
        if snap.info.dead and DEAD_NOTICE.match(text):
            text, col = "", 0  # the cursor is on tmux's "Pane is dead" line, not the program's
        self._assembler.set_line(text, col)
        self._discard = False
        self._streak.reset()
        self._told = None
        self.offer_screen(snap.screen())
        self._check_dead(snap)

    def _on_sync(self, blocks: list[Block]) -> None:
        snap = self._snap_from(blocks)
        if snap is None:
            return
        # Replies are ordered with %output: everything streamed so far is in this snapshot.
        self.tracker.reset_to(snap)
        self._since_sync.clear()
        self._rows_moved = False
        self._assembler.width = snap.info.width
        self._assembler.alt_screen = snap.info.alt
        text, _ = snap.partial()
        if not snap.info.dead and text.rstrip() != self._assembler.partial():
            log.debug("line model and pane differ on the cursor line; taking the pane's")
            self._assembler.set_line(text, snap.partial()[1])
        self.offer_screen(snap.screen())
        self._check_dead(snap)

    def _snap_from(self, blocks: list[Block]) -> Snapshot | None:
        if len(blocks) != len(window_commands("", 0)) or not all(b.ok for b in blocks):
            message = b" ".join(line for b in blocks for line in b.lines).decode("utf-8", "replace")
            log.info("pane %s is gone: %s", self.pane_id, message)
            self._finish_stream()
            return None
        outputs = ["".join(line.decode("utf-8", "replace") + "\n" for line in b.lines) for b in blocks]
        try:
            snap = Snapshot.parse(outputs)
        except (Inconsistent, TransientError) as exc:
            log.warning("unusable snapshot from control mode: %s", exc)
            return None
        if snap.info.pane_id != self.pane_id:
            self._finish_stream()
            return None
        return snap

    def _check_dead(self, snap: Snapshot) -> None:
        if snap.info.dead:
            self._finish_stream()

    def _finish_stream(self) -> None:
        if self.ended:
            return
        rest = self._assembler.partial()
        if rest:
            self.pending.lines.append(rest)
        self.end()
        if self._link is not None:
            self._link.stream.close()

    def wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended and not self.closing.is_set():
            link = self._link
            assert link is not None
            now = time.monotonic()
            self._maybe_sync(now)
            if self.pending.has_news():
                pause = 0.0  # deliver what we have after draining what is already readable
            else:
                pause = 0.05 if deadline is None else max(0.0, min(0.05, deadline - now))
            events = link.read(pause)
            if events is None:
                self._on_stream_end()
                return
            for event in events:
                self._on_event(event)
            if not events and pause == 0.0:
                return
            if deadline is not None and time.monotonic() >= deadline and not events:
                return

    def _on_event(self, event: Output | Notice | Block) -> None:
        if self._discard:
            self._note_attempt(event)
        if isinstance(event, Block):
            if self._link is not None:
                self._link.route(event)
        elif isinstance(event, Output):
            if event.pane != self.pane_id or self._discard:
                log.debug(
                    "skip %d bytes of %s output (ours: %s, before baseline: %s)",
                    len(event.data),
                    event.pane,
                    self.pane_id,
                    self._discard,
                )
                return
            assembler = self._assembler
            lines = assembler.feed(event.data)
            self._dirty = True
            if assembler.cleared_after is not None:
                # The pane was emptied (`clear`): as a position fix read now would say, what
                # follows starts at row 0, which is exact even if the stream drops before a fix.
                self.tracker.reset_to_cleared()
                self._since_sync.clear()
                self._rows_moved = False
            self._rows_moved |= assembler.moved_rows
            if lines:
                self.pending.lines.extend(lines)
                self._since_sync.extend(lines[assembler.cleared_after or 0 :])
                self.tracker.remember(lines)
        elif event.name in ("%window-close", "%unlinked-window-close", "%layout-change"):
            self._dirty = True
            self._last_sync = 0.0  # look now: the pane may be gone or resized
        elif event.name == "%session-changed" and event.rest.split(b" ")[:1] == [self.session_id.encode()]:
            if self._discard and not self._baseline_sent and self._link is not None:
                self._baseline_sent = True
                self._link.send(window_commands(self.pane_id, self._baseline_rows), self._on_baseline)
        elif event.name == "%exit":
            self._saw_exit = True
        elif event.name == "text":
            log.debug("control stream: %s", event.rest[:200].decode("utf-8", "replace"))

    def _note_attempt(self, event: Output | Notice | Block) -> None:
        """Keep what a session prints before tmux attached: if it ends there, these are the reasons."""
        if isinstance(event, Block) and not event.ok:
            self._attempt_output += b"\n".join(event.lines) + b"\n"  # e.g. attach-session's "can't find session"
        elif isinstance(event, Notice) and event.name == "text":
            self._attempt_output += event.rest + b"\n"  # the aws CLI's or the plugin's error
        del self._attempt_output[:-ATTEMPT_OUTPUT]

    def _maybe_sync(self, now: float) -> None:
        link = self._link
        if link is None or link.busy or self._discard:
            return
        # Moved rows make a reconnect inexact until the next fix: fix it soon.
        soon = (self._dirty and self.want_screen) or self._rows_moved
        interval = self.screen_interval if soon else self.check_interval
        # Also fix the position after a lot of output, so a reconnect finds it still in the history.
        if now - self._last_sync < interval and len(self._since_sync) < SYNC_LINES:
            return
        self._last_sync = now
        self._dirty = False
        try:
            link.send(window_commands(self.pane_id, ANCHOR_ROWS + 8), self._on_sync)
        except BrokenPipeError:
            log.info("control stream closed while sending")

    def _on_stream_end(self) -> None:
        if self.closing.is_set() or self.ended:
            return
        failure = classify(bytes(self._attempt_output)) if self._discard else None
        # An error from AWS or the plugin says nothing about the pane: only ask after it otherwise.
        if failure is None or failure.kind in ("no-session", "other"):
            try:
                info = self.tmux.pane_info(self.pane_id)
            except PaneGone:
                if not self._saw_exit or self._discard:
                    # The stream broke off (no %exit) and the pane is gone: its last output is unknown.
                    self.pending.gap_exact = False
                self._finish_stream()
                return
            if info.dead or info.pane_id != self.pane_id:
                self._finish_stream()
                return
        # The pane is alive but the stream dropped (ECS Exec idle timeout, SSM session drop), or the
        # session could not reach it.
        if failure is not None:
            self._session_failed(failure)
        if self._reconnects >= self.retry_policy.attempts:
            if failure is not None:
                raise SessionError(failure, self.tmux.transport.describe(), self._streak.attempts)
            raise TransientError(
                f"lost the stream to pane {self.pane_id} {self._reconnects} times",
                fix="check the network path to the target; `fceval-tui tail` resumes where it stopped",
            )
        self.pending.reconnecting = True
        delay = self.retry_policy.delay(self._reconnects)
        self._reconnects += 1
        log.warning("stream to %s dropped; reconnecting in %.1fs", self.pane_id, delay)
        if self.closing.wait(delay):
            return
        if self._link is not None:
            self._link.stream.close()
        self._connect(baseline_full=True)

    def _session_failed(self, failure: SessionFailure) -> None:
        """Tell a failure once it has repeated (raise it when retrying cannot help), never silently."""
        log.info("session to %s failed (%s): %s", self.pane_id, failure.kind, failure.words)
        if not self._streak.add(failure):
            return
        where = self.tmux.transport.describe()
        if failure.permanent:
            raise SessionError(failure, where, self._streak.attempts)
        if failure != self._told:
            self._told = failure
            self.pending.session_failure = f"{failure.message(where)} (fix: {failure.fix}); retrying"
