"""The console application and its factory (used by the CLI and the tests alike)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

# libtmux reads sys.stdout.encoding when imported, and Textual swaps sys.stdout while it runs:
# import the local backend before the app starts, not later from a runner thread.
import fceval_tui.backends.local  # noqa: F401
from fceval_tui import locations
from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, JobSpec, utcnow
from fceval_tui.errors import UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown
from fceval_tui.services.forwarding import Forwards
from fceval_tui.services.job_actions import cancel_jobs, retry_jobs
from fceval_tui.services.operator import STS_WAIT, identity, start_lookup
from fceval_tui.services.pool_keeper import PoolKeeper
from fceval_tui.services.report import read_grading_report
from fceval_tui.services.resources import list_resources
from fceval_tui.services.runner import Runner, run_settings
from fceval_tui.ui.screens.events import EventsScreen
from fceval_tui.ui.screens.jobs import JobsScreen
from fceval_tui.ui.screens.launch import LaunchScreen
from fceval_tui.ui.screens.modals import ConfirmScreen, HelpScreen, JumpScreen
from fceval_tui.ui.screens.pools import PoolsScreen
from fceval_tui.ui.screens.preflight import PreflightScreen
from fceval_tui.ui.screens.resources import ResourcesScreen
from fceval_tui.ui.screens.results import ResultsScreen
from fceval_tui.ui.screens.teardown import TeardownScreen
from fceval_tui.ui.themes import DEFAULT_THEME, load_themes

MUTATING_ACTIONS = {"launch", "teardown", "exec"}


def read_keymap(path: Path) -> tuple[dict[str, str], str | None]:
    """`[keys]` table of binding id -> key(s). Returns (keymap, problem)."""
    if not path.is_file():
        return {}, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return {}, f"{path}: not valid TOML ({exc}); default keys apply"
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        return {}, f'{path}: expected a [keys] table of "binding.id" = "key"; default keys apply'
    return keys, None


class FcevalApp(App):
    TITLE = "fceval-tui"
    MODES = {
        "jobs": JobsScreen,
        "resources": ResourcesScreen,
        "events": EventsScreen,
        "pools": PoolsScreen,
        "results": ResultsScreen,
    }
    DEFAULT_MODE = "jobs"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("colon", "jump", "Jump", show=False, id="app.jump"),
        Binding("1", "switch_mode('jobs')", "Jobs", show=False, id="app.view_jobs"),
        Binding("2", "switch_mode('resources')", "Resources", show=False, id="app.view_resources"),
        Binding("3", "switch_mode('events')", "Events", show=False, id="app.view_events"),
        Binding("4", "switch_mode('pools')", "Pools", show=False, id="app.view_pools"),
        Binding("5", "switch_mode('results')", "Results", show=False, id="app.view_results"),
        Binding("n", "launch", "New", id="app.launch"),
        Binding("p", "preflight", "Preflight", id="app.preflight"),
        Binding("T", "teardown", "Teardown", show=False, id="app.teardown"),
        Binding("X", "exec", "Exec on selection", show=False, id="app.exec"),
        Binding("F", "forwards", "Port forwards", show=False, id="app.forwards"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        readonly: bool = False,
        theme: str | None = None,
        demo_specs: Iterable[JobSpec] | None = None,
        clock: Callable[[], datetime] = utcnow,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.ledger = ledger
        self.readonly = readonly
        self.requested_theme = theme or settings.theme
        self.demo_specs = tuple(demo_specs or ())
        self.clock = clock
        self.polling_enabled = True
        self.runners: dict[str, Runner] = {}
        self.pool_keeper: PoolKeeper | None = None
        self._keymap = keymap or {}
        self._keymap_problem: str | None = None
        self._s3: object | None = None
        self.forwards = Forwards(settings, ledger, identity())
        self.sub_title = "READ-ONLY" if readonly else ""
        # Chosen before the first screen is styled: choosing it on mount styles every widget twice.
        self._theme_notes = self._install_themes()

    # -- start-up -------------------------------------------------------------------------------

    def on_mount(self) -> None:
        for note in self._theme_notes:
            self.notify(note, title="Theme", severity="warning", timeout=10)
        if self._keymap:
            self.set_keymap(self._keymap)
        if self._keymap_problem:
            self.notify(self._keymap_problem, title="Keymap", severity="warning")
        if self.demo_specs and not self.readonly:
            run_id = self.launch(self.settings, self.demo_specs)
            self.notify(f"demo run {run_id}: {len(self.demo_specs)} example jobs on this machine", title="Demo")
        self._check_orphans()
        start_lookup(self.settings)  # the AWS caller for the action log, in the background
        # While the console runs, warm pools are kept: health, idle timeout, the expiry of busy instances.
        self.pool_keeper = (
            None if self.readonly else PoolKeeper(self.settings, self.ledger, on_problem=self._pool_problem)
        )
        if self.pool_keeper is not None:
            self.pool_keeper.start()

    def _pool_problem(self, problem: str) -> None:
        self.call_from_thread(self.notify, problem, title="Pools", severity="warning")

    def _install_themes(self) -> list[str]:
        """Register the shipped and user themes and select the requested one; returns what to warn about."""
        themes, problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        notes = [str(problem) + "; skipped" for problem in problems]
        wanted = self.requested_theme
        if wanted not in self.available_themes:
            if wanted != DEFAULT_THEME:
                notes.append(f"theme {wanted!r} not found; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        return notes

    @work(thread=True, group="orphans", exit_on_error=False)
    def _check_orphans(self) -> None:
        orphans = teardown.find_orphans(self.settings, self.ledger)
        if orphans:
            self.call_from_thread(
                self.notify,
                f"{len(orphans)} resource(s) left over from earlier runs may still cost money. Press T to review.",
                title="Orphans",
                severity="warning",
                timeout=15,
            )

    # -- runs -----------------------------------------------------------------------------------

    def launch(self, settings: Settings, specs: Iterable[JobSpec]) -> str:
        """Create the run and start driving it (the demo's start-up path; the form does the same in a worker)."""
        runner = Runner(self.ledger, settings)
        run, _jobs = runner.create_run(list(specs))
        self.drive(runner, run.id)
        return run.id

    def drive(self, runner: Runner, run_id: str) -> None:
        self.runners[run_id] = runner
        self._drive(runner, run_id)

    def _drive(self, runner: Runner, run_id: str) -> None:
        self.run_worker(
            partial(runner.run, run_id), name=f"runner-{run_id}", group="runner", thread=True, exit_on_error=False
        )

    def retry(self, jobs: list[Job]) -> None:
        if self.readonly or not jobs:
            return
        retried = retry_jobs(self.ledger, [j.id for j in jobs], by=identity())
        if not retried:
            self.notify("only failed, timed-out or cancelled jobs can be retried", severity="warning")
            return
        for run_id in {j.run_id for j in retried}:
            if self._driving(run_id) or self.ledger.run_owner(run_id):
                continue  # whoever drives the run picks up its pending jobs
            self.drive(Runner(self.ledger, run_settings(self.settings, self.ledger.get_run(run_id))), run_id)
        self.notify(f"retrying {len(retried)} job(s)")

    def _driving(self, run_id: str) -> bool:
        return any(w.group == "runner" and w.is_running and w.name == f"runner-{run_id}" for w in self.workers)

    def confirm_cancel(self, job_ids: list[str], question: str) -> None:
        if self.readonly:
            return

        def done(ok: bool | None) -> None:
            if ok:
                self._cancel(job_ids)

        self.push_screen(ConfirmScreen(question, "Cancel jobs"), done)

    @work(thread=True, group="cancel", exit_on_error=False)
    def _cancel(self, job_ids: list[str]) -> None:
        cancelled = cancel_jobs(self.ledger, self.settings, job_ids, by=identity(wait=STS_WAIT))
        self.call_from_thread(self.notify, f"cancelled {len(cancelled)} job(s)")

    def resource_listing(self) -> tuple[list[Resource], dict[str, str], list[str], dict]:
        """Every backend's live resources, why each orphan is one, what could not be listed (teardown's
        own listing and rules), and the pool instances' rows; called from a worker thread."""
        listing = list_resources(self.settings, self.ledger)
        return listing.resources, listing.orphans, listing.errors, listing.pools

    def highlighted_run_id(self) -> str | None:
        """The run of the job highlighted in the jobs view, if that view has a highlighted job."""
        for screen in self.get_screen_stack("jobs"):
            if isinstance(screen, JobsScreen) and screen.is_mounted and (job := screen.table.selected):
                return job.run_id
        return None

    def read_grading_report(self, location: str) -> object:
        """A grading report, local or on S3 (called from a worker thread; the S3 client is built once)."""
        return read_grading_report(location, self._s3_client)

    def _s3_client(self) -> object:
        # Built on first use only (boto3 is slow to import), then kept; results workers are exclusive.
        if self._s3 is None:
            from fceval_tui.backends.aws import AwsClients

            self._s3 = AwsClients(self.settings.region, self.settings.profile, ("s3",)).s3
        return self._s3

    def open_attach(self, job: Job) -> None:
        from fceval_tui.ui.screens.attach import AttachScreen

        self.push_screen(AttachScreen(job))

    # -- actions --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("command_palette", "quit") and getattr(self.screen, "control", False):
            return False  # in control mode ctrl+p and ctrl+q belong to the program in the pane
        return not (self.readonly and action in MUTATING_ACTIONS)

    def action_help(self) -> None:
        rows = []
        seen = set()
        for binding_id_source in (self.screen, self):
            for binding in binding_id_source.BINDINGS:
                if isinstance(binding, Binding) and binding.id not in seen:
                    seen.add(binding.id)
                    # The keys as remapped in keymap.toml, not the defaults.
                    key = self._keymap.get(binding.id, binding.key) if binding.id else binding.key
                    keys = ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in key.split(","))
                    rows.append((keys, binding.description or binding.action, binding.id or ""))
        self.push_screen(HelpScreen(rows, str(locations.keymap_path())))

    def action_jump(self) -> None:
        def go(view: str | None) -> None:
            if view in self.MODES:
                self.switch_mode(view)
            elif view:
                getattr(self, f"action_{view}")()

        self.push_screen(JumpScreen(), go)

    def action_launch(self, jobs_file: str = "") -> None:
        def launched(run_id: str | None) -> None:
            if run_id:
                self.notify(f"run {run_id} launched", title="Launch")
                self.switch_mode("jobs")

        self.push_screen(LaunchScreen(self.settings, jobs_file), launched)

    def action_preflight(self) -> None:
        self.push_screen(PreflightScreen())

    def action_teardown(self) -> None:
        self.push_screen(TeardownScreen())

    def action_exec(self) -> None:
        from fceval_tui.ui.screens.fleet import open_exec

        open_exec(self)

    def action_forwards(self) -> None:
        from fceval_tui.ui.screens.fleet import open_forwards

        open_forwards(self)

    def on_unmount(self) -> None:
        self.forwards.close_all()  # no forward outlives the console
        if self.pool_keeper is not None:
            self.pool_keeper.stop(timeout=1.0)  # a pass under way ends with the process (daemon thread)

    async def action_quit(self) -> None:
        active = [run_id for run_id in self.runners if self._driving(run_id)]
        if not active:
            self.exit()
            return

        def answer(ok: bool | None) -> None:
            if ok:
                for run_id in active:
                    self.runners[run_id].stop()
                self.exit(message=_detached_message(active))

        self.push_screen(
            ConfirmScreen(
                f"{len(active)} run(s) are being driven by this console. Quit anyway? Running tmux sessions go on; "
                f"pending jobs wait until you `fceval-tui resume` the run.",
                "Quit",
            ),
            answer,
        )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Jobs view", "All jobs with state, attempts, cost (1)", lambda: self.switch_mode("jobs"))
        yield SystemCommand(
            "Resources view", "Live compute behind jobs, orphans (2)", lambda: self.switch_mode("resources")
        )
        yield SystemCommand("Events view", "What the runner did and why (3)", lambda: self.switch_mode("events"))
        yield SystemCommand(
            "Pools view", "Warm pools: instances, jobs, idle time, cost (4)", lambda: self.switch_mode("pools")
        )
        yield SystemCommand(
            "Results view", "Pass rates, scores, durations of a run (5)", lambda: self.switch_mode("results")
        )
        yield SystemCommand("Preflight audit", "IAM, S3, network and quota checks (p)", self.action_preflight)
        yield SystemCommand("Help", "Every key binding and its id (?)", self.action_help)
        if not self.readonly:
            yield SystemCommand("Launch jobs", "Open the launch form (n)", self.action_launch)
            yield SystemCommand(
                "Launch the example jobs", "Fill the launch form with examples/jobs.csv", self._launch_examples
            )
            yield SystemCommand("Teardown", "Remove leftover resources (T)", self.action_teardown)
        if isinstance(screen, JobsScreen):
            for binding in screen.BINDINGS:
                if screen.check_action(binding.action, ()):
                    yield SystemCommand(
                        f"Job: {binding.description}",
                        f"key {binding.key}",
                        lambda action=binding.action: screen.run_action(action),
                    )

    def _launch_examples(self) -> None:
        from fceval_tui.package_data import example_jobs

        self.action_launch(str(example_jobs()))

    # -- errors from every worker, in one place -------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.handle_worker_state(event)

    def handle_worker_state(self, event: Worker.StateChanged) -> None:
        """Every worker's failure, the app's and the screens', is reported here and only here."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, UserError):
            self.notify(str(error), title="Error", severity="error", timeout=10)
        else:
            self.log.error(f"worker {event.worker.name} failed: {error!r}")
            self.notify(
                f"{event.worker.group or 'background task'} failed: {error!r}",
                title="Error",
                severity="error",
                timeout=10,
            )
        if event.worker.group.endswith("-poll"):
            # Keep polling after a failure (e.g. the ledger briefly locked): re-arm instead of going stale.
            screen = event.worker.node
            if hasattr(screen, "poll_done"):
                screen.poll_done()


def _detached_message(run_ids: list[str]) -> str:
    lines = [f"left run {r} running: continue with `fceval-tui resume {r}`" for r in run_ids]
    return "\n".join(lines)


def make_app(
    settings: Settings,
    ledger: Ledger,
    readonly: bool = False,
    theme: str | None = None,
    demo_specs: Iterable[JobSpec] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FcevalApp:
    keymap, problem = read_keymap(locations.keymap_path())
    app = FcevalApp(settings, ledger, readonly=readonly, theme=theme, demo_specs=demo_specs, clock=clock, keymap=keymap)
    app._keymap_problem = problem
    return app
