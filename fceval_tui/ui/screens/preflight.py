"""Preflight: run the audit's checks concurrently with live progress per check, then show every
finding with what was found and the exact fix; export the findings as JSON."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from fceval_tui import locations
from fceval_tui.domain.models import BACKENDS
from fceval_tui.services.audit import AuditReport, CheckEvent, list_checks, run_audit
from fceval_tui.services.audit_checks import Finding, Severity
from fceval_tui.ui.messages import AuditFinished, AuditProgress, FindingsExported
from fceval_tui.ui.workers import ReportWorkerErrors

SEVERITY_STYLE = {
    Severity.OK: "green",
    Severity.INFO: "cyan",
    Severity.WARNING: "bold yellow",
    Severity.ERROR: "bold red",
    Severity.UNKNOWN: "magenta",
}


def severity_text(severity: Severity) -> Text:
    return Text(
        severity.value.upper() if severity in (Severity.ERROR, Severity.WARNING) else severity.value,
        style=SEVERITY_STYLE[severity],
    )


def worst(findings: tuple[Finding, ...]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)


class PreflightScreen(ReportWorkerErrors, Screen):
    DEFAULT_CSS = """
    PreflightScreen #panes { height: 1fr; }
    PreflightScreen #checks { width: 46; border: round $primary; }
    PreflightScreen #findings { width: 1fr; border: round $primary; }
    PreflightScreen #detail { height: 9; border: round $secondary; padding: 0 1; }
    PreflightScreen #detail Horizontal { height: auto; }
    PreflightScreen #detail .label { width: 8; text-style: bold; }
    PreflightScreen #detail .value { width: 1fr; text-overflow: fold; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="preflight.back"),
        Binding("r", "rerun", "Run again", id="preflight.rerun"),
        Binding("b", "next_backend", "Backend", id="preflight.backend"),
        Binding("e", "export", "Export JSON", id="preflight.export"),
        Binding("y", "copy_fix", "Copy fix", id="preflight.copy_fix"),
    ]

    def __init__(self, backend: str | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.report: AuditReport | None = None
        self._findings: list[Finding] = []
        self._shown: Finding | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            yield DataTable(cursor_type="row", id="checks")
            with Vertical(id="findings"):
                yield DataTable(cursor_type="row", zebra_stripes=True, id="finding-table")
        # Label and value side by side: a long value (an IAM policy) wraps under itself, and is selectable.
        with VerticalScroll(id="detail"):
            yield Static("", id="detail-head")
            for field in ("detail", "fix"):
                with Horizontal(id=f"detail-{field}-row"):
                    yield Static(field, id=f"detail-{field}-label", classes="label")
                    yield Static("", id=f"detail-{field}", classes="value")
        yield Footer()

    def on_mount(self) -> None:
        self.backend = self.backend or self.app.settings.backend
        checks = self.query_one("#checks", DataTable)
        checks.add_column("Check", key="title")
        checks.add_column("Status", key="status")
        findings = self.query_one("#finding-table", DataTable)
        for key, label in (("severity", "Severity"), ("area", "Area"), ("id", "Finding"), ("summary", "Summary")):
            findings.add_column(label, key=key)
        self.action_rerun()

    # -- running -----------------------------------------------------------------------------------

    def action_rerun(self) -> None:
        self.report = None
        self._findings = []
        checks = self.query_one("#checks", DataTable)
        checks.clear()
        for check in list_checks(self.backend):
            checks.add_row(check.title, Text("waiting", style="dim"), key=check.id)
        self.query_one("#finding-table", DataTable).clear()
        self._show(None)
        self.sub_title = f"{self.backend} backend: running {checks.row_count} checks"
        self._audit(self.backend)

    def action_next_backend(self) -> None:
        self.backend = BACKENDS[(BACKENDS.index(self.backend) + 1) % len(BACKENDS)]
        self.action_rerun()

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _audit(self, backend: str) -> None:
        def progress(event: CheckEvent) -> None:  # called from the audit's pool threads
            self.post_message(AuditProgress(event))

        report = run_audit(self.app.settings, backend, on_progress=progress, read_only=self.app.readonly)
        self.post_message(AuditFinished(report))

    def on_audit_progress(self, message: AuditProgress) -> None:
        event = message.event
        checks = self.query_one("#checks", DataTable)
        if event.check.id not in checks.rows:
            return  # a late message from a run that was replaced by a newer one
        if not event.finished:
            checks.update_cell(event.check.id, "status", Text("running…", style="bold"))
            return
        checks.update_cell(event.check.id, "status", severity_text(worst(event.findings)))

    def on_audit_finished(self, message: AuditFinished) -> None:
        if message.report.backend != self.backend:
            return
        self.report = message.report
        ordered = sorted(message.report.findings, key=lambda f: -f.severity.rank)  # problems first
        self._findings = ordered
        table = self.query_one("#finding-table", DataTable)
        table.clear()
        for index, finding in enumerate(ordered):
            table.add_row(severity_text(finding.severity), finding.area, finding.id, finding.summary, key=str(index))
        counts = message.report.counts()
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        verdict = "errors block cloud launches" if message.report.has_errors else "no errors"
        self.sub_title = f"{self.backend} backend: {summary} ({verdict})"
        if ordered:
            self._show(ordered[0])

    @on(DataTable.RowHighlighted, "#finding-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and int(event.row_key.value) < len(self._findings):
            self._show(self._findings[int(event.row_key.value)])

    def _show(self, finding: Finding | None) -> None:
        self._shown = finding
        head = Text()
        if finding is not None:
            head.append(f"{finding.id}  ", style="bold")
            head.append_text(severity_text(finding.severity))
            head.append(f"  {finding.summary}")
        self.query_one("#detail-head", Static).update(head)
        for field in ("detail", "fix"):
            value = getattr(finding, field) if finding is not None else ""
            self.query_one(f"#detail-{field}-row").display = bool(value)
            self.query_one(f"#detail-{field}", Static).update(Text(value, style="dim" if field == "detail" else ""))

    def action_copy_fix(self) -> None:
        if self._shown is None or not self._shown.fix:
            self.notify("this finding has no fix", severity="warning")
            return
        self.app.copy_to_clipboard(self._shown.fix)
        self.notify(f"copied the fix for {self._shown.id}", title="Preflight")

    # -- export --------------------------------------------------------------------------------

    def action_export(self) -> None:
        if self.report is None:
            self.notify("the audit is still running", severity="warning")
            return
        stamp = self.app.clock().strftime("%Y%m%dT%H%M%SZ")
        self._export(self.report, locations.preflight_export(self.app.settings.state_dir, self.backend, stamp))

    @work(thread=True, group="preflight-export", exit_on_error=False)
    def _export(self, report: AuditReport, path) -> None:
        self.post_message(FindingsExported(str(report.export(path))))

    def on_findings_exported(self, message: FindingsExported) -> None:
        self.notify(f"findings written to {message.path}", title="Preflight")
