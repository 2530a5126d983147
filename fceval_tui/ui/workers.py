"""Worker errors are handled in one place, the app; this mixin routes screens' workers there."""

from __future__ import annotations

from textual.worker import Worker


class ReportWorkerErrors:
    """Worker.StateChanged does not bubble, so a screen hands its workers' events to the app."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.handle_worker_state(event)
