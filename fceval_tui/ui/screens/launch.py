"""The launch form: the CLI's validation rules and messages, a dry-run preview, then launch."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from fceval_tui.config import Settings, setting
from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import ConfigError, JobFileError, UserError
from fceval_tui.ledger_pools import PoolBook
from fceval_tui.presentation import render_plan
from fceval_tui.services import launching
from fceval_tui.services.runner import Runner
from fceval_tui.ui.messages import LaunchPreviewed, RunCreated
from fceval_tui.ui.workers import ReportWorkerErrors

# (field id, label, settings attr or None, placeholder)
FIELDS = (
    ("jobs", "Job file", None, "path to agent,task_id[,model] CSV"),
    ("task_ids", "Task ids", None, "or: task ids separated by spaces or commas"),
    ("agent", "Agent", "agent", "agent for task ids"),
    ("model", "Model", "model", "default model"),
    ("dataset", "Dataset", "dataset", ""),
    ("ec2_instance_type", "Instance type", "ec2_instance_type", "c5ad.large (ec2)"),
    ("concurrent", "Concurrency", "concurrent", "jobs at once"),
    ("ttl_minutes", "TTL (min)", "ttl_minutes", "hard lifetime of cloud resources"),
    ("job_timeout_minutes", "Timeout (min)", "job_timeout_minutes", "per job"),
    ("spot_price", "Spot price", "spot_price", "USD/h; empty: on-demand"),
    ("artifacts", "Artifacts", "artifacts", "local dir or s3://bucket/prefix"),
)
NEW_INSTANCES = "new instances"
ENV_TO_FIELD = {setting(attr).env: fid for fid, _, attr, _ in FIELDS if attr} | {"FCEVAL_BACKEND": "backend"}


def _initial(settings: Settings, attr: str | None) -> str:
    if attr is None:
        return ""
    value = getattr(settings, attr)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class LaunchScreen(ReportWorkerErrors, ModalScreen[str | None]):
    """Dismisses with the new run id, or None."""

    DEFAULT_CSS = """
    LaunchScreen { align: center middle; }
    LaunchScreen > Vertical { width: 110; height: 90%; border: thick $primary; background: $surface; }
    LaunchScreen #form { height: auto; grid-size: 4; grid-columns: 14 1fr 14 1fr; grid-rows: auto; grid-gutter: 0 1;
                         padding: 0 1; }
    LaunchScreen #form { margin: 1 0; }
    LaunchScreen .error { color: $error; column-span: 4; height: auto; padding: 0 1; }
    LaunchScreen #preview-scroll { height: 1fr; border-top: solid $panel; padding: 0 1; }
    LaunchScreen #buttons { height: auto; align-horizontal: right; padding: 0 1; }
    LaunchScreen Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", id="launch.close"),
        Binding("ctrl+r", "preview", "Preview", id="launch.preview"),
    ]

    def __init__(self, settings: Settings, jobs_file: str = "") -> None:
        super().__init__()
        self.base = settings
        self.jobs_file = jobs_file
        self._plan: dict | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "[b]Launch jobs[/b]  fill in, Preview (ctrl+r) shows exactly what will run, then Launch", id="title"
            )
            with Grid(id="form"):
                for fid, label, attr, placeholder in FIELDS:
                    yield Label(label)
                    value = self.jobs_file if fid == "jobs" else _initial(self.base, attr)
                    yield Input(value=value, placeholder=placeholder, id=fid, compact=True)
                yield Label("Backend")
                yield Select(
                    [(b, b) for b in BACKENDS], value=self.base.backend, allow_blank=False, id="backend", compact=True
                )
                yield Label("Compute")
                yield Select([(NEW_INSTANCES, "")], value="", allow_blank=False, id="compute", compact=True)
            yield Label("", id="errors", classes="error")
            with VerticalScroll(id="preview-scroll"):
                yield Static("", id="preview")
            with Horizontal(id="buttons"):
                yield Button("Close", id="close")
                yield Button("Preview", id="preview-btn", variant="primary")
                yield Button("Launch", id="launch", variant="success", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs" if not self.jobs_file else "#preview-btn").focus()
        self._load_pools()

    @work(thread=True, exclusive=True, group="launch-pools", exit_on_error=False)
    def _load_pools(self) -> None:
        names = [p.name for p in PoolBook(self.app.ledger).pools() if p.up]
        self.app.call_from_thread(self._show_pools, names)

    def _show_pools(self, names: list[str]) -> None:
        """EC2 jobs on new instances, or on one of the warm pools that are up (`fceval-tui pool up`)."""
        compute = self.query_one("#compute", Select)
        compute.set_options([(NEW_INSTANCES, "")] + [(f"warm pool {name}", name) for name in names])
        wanted = self.base.pool if self.base.pool in names else ""
        compute.value = wanted

    def _compute(self) -> str:
        value = self.query_one("#compute", Select).value
        return value if isinstance(value, str) else ""

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_preview()  # enter in any field: check it and show the plan

    def _raw(self) -> dict[str, str]:
        return {fid: self.query_one(f"#{fid}", Input).value.strip() for fid, *_ in FIELDS}

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        # Any edit invalidates the preview: the user launches only what they have seen.
        self._plan = None
        self.query_one("#launch", Button).disabled = True

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#preview-btn")
    def action_preview(self) -> None:
        self._validate(self._raw(), str(self.query_one("#backend", Select).value), self._compute())

    @work(thread=True, exclusive=True, group="launch-validate", exit_on_error=False)
    def _validate(self, raw: dict[str, str], backend: str, pool: str) -> None:
        errors: dict[str, str] = {}
        try:
            settings, specs = self.resolve(raw, backend, pool)
            plan = launching.plan(settings, specs)
        except (ConfigError, JobFileError, UserError) as exc:
            errors[self._field_for(exc, raw)] = str(exc)
            plan = None
        self.post_message(LaunchPreviewed(plan, errors))

    def resolve(self, raw: dict[str, str], backend: str, pool: str = ""):
        """The same parsing and checks as `fceval-tui launch`, with form values as command-line values;
        `pool`: a warm pool the jobs run on (as `--pool`), empty for new instances."""
        typed = {attr: raw[fid] for fid, _, attr, _ in FIELDS if attr and raw[fid] != _initial(self.base, attr)}
        typed["backend"] = backend
        from fceval_tui.services.pool import settings_for_run  # loads boto3: only once a form is checked

        settings = settings_for_run(self.base.with_raw(typed).replace(pool=pool or None), self.app.ledger)
        if raw["jobs"] and raw["task_ids"]:
            raise UserError("give a job file or task ids, not both", "clear one of the two fields")
        if not raw["jobs"] and not raw["task_ids"]:
            raise UserError("no jobs: give a job file or task ids", "fill in 'Job file' or 'Task ids'")
        task_ids = [t for t in raw["task_ids"].replace(",", " ").split() if t]
        parsed = launching.parse_jobs(settings, Path(raw["jobs"]).expanduser() if raw["jobs"] else None, task_ids)
        launching.check_can_launch(settings, skip_preflight=False)
        return settings, parsed.specs

    @staticmethod
    def _field_for(exc: Exception, raw: dict[str, str]) -> str:
        text = str(exc)
        for env, fid in ENV_TO_FIELD.items():
            if text.startswith(env + "="):
                return fid
        if isinstance(exc, JobFileError):
            return "jobs" if raw["jobs"] else "task_ids"
        if "agent" in text:
            return "agent"
        return "jobs"

    def on_launch_previewed(self, message: LaunchPreviewed) -> None:
        errors_label = self.query_one("#errors", Label)
        for fid, *_ in FIELDS:
            self.query_one(f"#{fid}", Input).set_class(fid in message.errors, "-invalid")
        if message.errors:
            errors_label.update("\n".join(message.errors.values()))
            self.query_one("#preview", Static).update("")
            self._plan = None
            self.query_one("#launch", Button).disabled = True
            field = next(iter(message.errors))
            self.query_one(f"#{field}", Input).focus()
            return
        errors_label.update("")
        self._plan = message.plan
        self.query_one("#preview", Static).update(render_plan(message.plan))
        launch = self.query_one("#launch", Button)
        launch.disabled = self.app.readonly
        launch.focus()

    @on(Button.Pressed, "#launch")
    def _launch(self) -> None:
        if self._plan is None or self.app.readonly:
            return
        self.query_one("#launch", Button).disabled = True  # one press, one run
        self._create_run(self._raw(), str(self.query_one("#backend", Select).value), self._compute())

    @work(thread=True, exclusive=True, group="launch-create", exit_on_error=False)
    def _create_run(self, raw: dict[str, str], backend: str, pool: str) -> None:
        # Checks again (files and cloud state may have changed since the preview) and writes the
        # run: AWS calls and ledger writes stay off the event loop. A UserError is shown by the app.
        settings, specs = self.resolve(raw, backend, pool)
        runner = Runner(self.app.ledger, settings)
        run, _jobs = runner.create_run(list(specs))
        self.post_message(RunCreated(runner, run.id))

    def on_run_created(self, message: RunCreated) -> None:
        self.app.drive(message.runner, message.run_id)
        self.dismiss(message.run_id)
