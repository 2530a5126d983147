"""Poll loops that never overlap: the timer is re-armed only after the worker's result arrives."""

from __future__ import annotations

from textual.screen import Screen

from fceval_tui.ui.workers import ReportWorkerErrors


class PollingScreen(ReportWorkerErrors, Screen):
    """A screen that refreshes from a thread worker every `poll_interval` seconds while visible.

    Subclasses implement `start_poll()` (launching an exclusive thread worker that posts a
    message) and call `poll_done()` from that message's handler.
    """

    poll_interval: float = 0.5
    _poll_timer = None
    _polling = False

    def on_screen_resume(self) -> None:
        self.poll_now()

    def poll_now(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if not self._polling:
            self._polling = True
            self.start_poll()

    def poll_done(self) -> None:
        self._polling = False
        if self.is_current and self.app.polling_enabled:
            self._poll_timer = self.set_timer(self.poll_interval, self.poll_now)

    def start_poll(self) -> None:
        raise NotImplementedError
