"""Results that screens' thread workers post back to the event loop, one dataclass each.

A worker never touches widgets: it posts one of these and the screen's `on_<snake_name>` handler
(Textual derives it from the class name, e.g. `JobsLoaded` -> `on_jobs_loaded`) updates the view.
Messages that belong to a widget's API stay nested in that widget (JobsTable.JobHighlighted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.message import Message

if TYPE_CHECKING:
    from fceval_tui.backends.base import Resource, TmuxTarget
    from fceval_tui.domain.models import Event, Job
    from fceval_tui.ledger import RunSummary
    from fceval_tui.services.audit import AuditReport, CheckEvent
    from fceval_tui.services.fleet_exec import ExecReport, MachineResult
    from fceval_tui.services.forwarding import Forward
    from fceval_tui.services.mirror import Mirror
    from fceval_tui.services.pool_view import InstanceRow, PoolStatus
    from fceval_tui.services.report import Report
    from fceval_tui.services.runner import Runner
    from fceval_tui.services.teardown import Plan, Result

# -- jobs view -------------------------------------------------------------------------------------


@dataclass
class JobsLoaded(Message):
    """Jobs changed since the last poll, the ledger cursor to poll from next, and every run's progress."""

    jobs: list[Job]
    cursor: int
    summaries: list[RunSummary]


@dataclass
class JobDetailLoaded(Message):
    """One job's timeline and the last lines it printed, drawn as its terminal showed them."""

    job: Job
    events: list[Event]
    output: list[Text]


# -- events and resources views --------------------------------------------------------------------


@dataclass
class EventsLoaded(Message):
    """Ledger events newer than the last ones shown, and the jobs they name that the view had not seen."""

    events: list[Event]
    jobs: dict[str, Job]  # job id -> job


@dataclass
class ResourcesLoaded(Message):
    resources: list[Resource]
    orphans: dict[str, str]  # resource id -> why it is an orphan
    errors: list[str]  # backends that could not be listed, and why
    pools: dict[str, InstanceRow] = field(default_factory=dict)  # a pool instance's id -> its row


@dataclass
class PoolsLoaded(Message):
    """Every warm pool with its live instances (the Pools view)."""

    statuses: list[PoolStatus]


@dataclass
class ResultsLoaded(Message):
    """The report of one run (the same one `fceval-tui report` prints), or None when there is no run yet."""

    report: Report | None


# -- attach view -----------------------------------------------------------------------------------


@dataclass
class PaneAttached(Message):
    """The job's pane was found: where it is and the mirror following it."""

    target: TmuxTarget
    mirror: Mirror


@dataclass
class PaneUpdate(Message):
    """New completed lines (the mirror's plain text, or saved output drawn as Text), a notice, the
    visible screen, and the pane's state."""

    lines: list[str | Text]
    notice: str | None
    screen: list[str] | None
    ended: bool
    reconnecting: bool
    trouble: str = ""  # sessions to the pane fail: the remote's words and the fix (with `ended`: given up)


@dataclass
class PasteProgress(Message):
    """How much of a paste has reached the pane's machine; `error` when it failed."""

    done: int
    total: int
    error: str | None = None


# -- launch form -----------------------------------------------------------------------------------


@dataclass
class LaunchPreviewed(Message):
    """The dry-run plan of the form's values, or the errors per field id."""

    plan: dict[str, Any] | None
    errors: dict[str, str]


@dataclass
class RunCreated(Message):
    runner: Runner
    run_id: str


# -- preflight -------------------------------------------------------------------------------------


@dataclass
class AuditProgress(Message):
    event: CheckEvent


@dataclass
class AuditFinished(Message):
    report: AuditReport


@dataclass
class FindingsExported(Message):
    path: str


# -- teardown --------------------------------------------------------------------------------------


@dataclass
class TeardownPlanned(Message):
    plan: Plan


@dataclass
class TeardownProgress(Message):
    line: str


@dataclass
class TeardownDone(Message):
    result: Result


# -- exec and forwards -----------------------------------------------------------------------------


@dataclass
class ExecProgress(Message):
    """One machine answered."""

    result: MachineResult


@dataclass
class ExecFinished(Message):
    report: ExecReport


@dataclass
class ForwardOpened(Message):
    forward: Forward
