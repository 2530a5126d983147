"""Local backend: each job in its own tmux session on a tmux socket private to the state dir.

The pipeline script (domain/pipeline.py) runs as the pane's command and leaves status files in the
job's work directory; exit codes come from those files, never from scraping the screen. The
pane's output is also piped to `console.log` so it survives the session.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from pathlib import Path

import libtmux
from libtmux.exc import LibTmuxException

from fceval_tui import locations
from fceval_tui.backends.base import (
    Backend,
    JobContext,
    Observation,
    Outcome,
    Resource,
    ResourceGone,
    TmuxTarget,
    work_dir,
)
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import join_prefix, keys_for
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import PermanentError, TransientError, UserError

IDLE_COMMAND = "sleep 2147483647"  # holds a new pane until its log pipe is attached


def require_tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        raise UserError(
            "tmux is not installed or not on PATH (the local backend runs every job in a tmux session)",
            "install it, e.g. `sudo apt-get install tmux` or `brew install tmux`",
        )
    return path


class LocalBackend(Backend):
    name = "local"
    first_state = JobState.STARTING
    poll_interval = 0.25

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.socket = locations.tmux_socket_name(settings.state_dir)
        self._server = None

    # -- tmux plumbing ------------------------------------------------------------------------

    def check_ready(self) -> None:
        require_tmux()

    @property
    def server(self):
        if self._server is None:
            require_tmux()
            conf = locations.tmux_conf(self.settings.state_dir)
            # Read when the private server starts: every job pane keeps a long history and stays
            # visible after its command exits, so the final output can still be mirrored.
            conf.write_text(
                f"set -g history-limit {pipeline.HISTORY_LIMIT}\nset -g remain-on-exit on\nset -g status off\n"
            )
            self._server = libtmux.Server(socket_name=self.socket, config_file=str(conf))
        return self._server

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([require_tmux(), "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise TransientError(f"tmux {args[0]} failed: {proc.stderr.strip() or proc.returncode}")
        return proc

    def _has_session(self, name: str) -> bool:
        return self.tmux("has-session", "-t", f"={name}", check=False).returncode == 0

    # -- the Backend contract -----------------------------------------------------------------

    def provision(self, ctx: JobContext) -> str:
        return ctx.job.id

    def start(self, ctx: JobContext, resource_id: str) -> None:
        work = ctx.work_dir
        for name in (*pipeline.STATUS_FILES, pipeline.CONSOLE_LOG):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(work / "out", ignore_errors=True)
        artifacts = work / "artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        script = pipeline.render(
            str(work),
            str(artifacts),
            ctx.run_command,
            ctx.grade_command,
            banner=f"fceval-tui job {ctx.job.id} attempt {ctx.attempt}",
        )
        (work / pipeline.SCRIPT_NAME).write_text(script)
        env_file = work / pipeline.ENV_FILE
        env_file.write_text(pipeline.env_file_text(dict(ctx.env)))
        env_file.chmod(0o600)
        if self._has_session(resource_id):
            self.tmux("kill-session", "-t", f"={resource_id}", check=False)
        try:
            # Start idle, attach the log pipe, then run the script: no output escapes console.log.
            session = self.server.new_session(
                session_name=resource_id,
                window_command="sleep 2147483647",
                start_directory=str(work),
                x=200,
                y=50,
            )
        except LibTmuxException as exc:
            raise TransientError(f"could not create tmux session {resource_id}: {exc}") from exc
        pane = session.active_window.active_pane
        target = pane.pane_id
        self.tmux("pipe-pane", "-t", target, "-o", "cat >> " + _q(str(work / pipeline.CONSOLE_LOG)))
        self.tmux("respawn-pane", "-k", "-t", target, "sh " + _q(str(work / pipeline.SCRIPT_NAME)))

    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        status = self._status(ctx.work_dir)
        if status.done:
            return Observation(JobState.UPLOADING, done=True, exit_code=status.exit_code)
        pane = self.tmux(
            "display-message",
            "-p",
            "-t",
            f"={resource_id}:",
            "#{session_name}\t#{pane_dead}\t#{pane_start_command}",
            check=False,
        )
        # display-message may not fail on a missing target (tmux 3.3a exits 0 with empty fields while the
        # server has other sessions): only a line naming this very session proves it still exists.
        name, _, rest = pane.stdout.rstrip("\n").partition("\t")
        if pane.returncode != 0 or name != resource_id:
            return self._finished_or_gone(ctx, f"tmux session {resource_id} is gone before the pipeline finished")
        dead, _, command = rest.partition("\t")
        if command.strip('"').startswith(IDLE_COMMAND):
            # A runner was killed between creating the session and starting the script in it.
            raise ResourceGone(f"the pipeline was never started in tmux session {resource_id}")
        if dead == "1":
            return self._finished_or_gone(ctx, f"the pipeline in tmux session {resource_id} died before finishing")
        return Observation(status.state, exit_code=status.run_exit)

    def _finished_or_gone(self, ctx: JobContext, gone: str) -> Observation:
        # The pipeline writes its status before its pane dies: it may have finished between the two reads.
        status = self._status(ctx.work_dir)
        if status.done:
            return Observation(JobState.UPLOADING, done=True, exit_code=status.exit_code)
        raise ResourceGone(gone)

    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        status = self._status(ctx.work_dir)
        succeeded = status.exit_code == 0
        keys = keys_for(ctx.job, succeeded, utcnow())
        stored: list[str] = []
        for local, key in ((pipeline.RUN_ARCHIVE, keys.run_archive), (pipeline.REPORT_ARCHIVE, keys.grading_report)):
            source = ctx.work_dir / local
            if source.is_file():
                stored.append(self._store_artifact(source, join_prefix(ctx.artifact_prefix, key)))
        if not (ctx.work_dir / pipeline.RUN_ARCHIVE).is_file():
            error = "the pipeline did not produce out/run.tar.gz"
            return Outcome(False, status.exit_code, tuple(stored), error, ErrorClass.UPLOAD)
        if succeeded:
            return Outcome(True, status.exit_code, tuple(stored))
        failed_step = ErrorClass.HARNESS_EXIT if status.run_exit not in (None, 0) else ErrorClass.GRADING
        return Outcome(False, status.exit_code, tuple(stored), _step_error(status), failed_step)

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        if self._has_session(resource_id):
            self.tmux("kill-session", "-t", f"={resource_id}", check=False)

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        if not self.settings.keep_sessions:
            self.cancel(ctx, resource_id)

    def _store_artifact(self, source: Path, destination: str) -> str:
        """Copy one packed artifact to a local path or an s3:// URL; return where it went."""
        if destination.startswith("s3://"):
            from fceval_tui.backends.aws import AwsClients, upload_file

            upload_file(AwsClients(self.settings.region, self.settings.profile, ("s3",)), source, destination)
            return destination
        target = Path(destination)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            raise PermanentError(
                f"cannot store artifact at {target} ({exc.strerror})", "set FCEVAL_ARTIFACTS to a writable directory"
            ) from None
        return str(target)

    def list_resources(self) -> list[Resource]:
        fmt = "#{session_name}\t#{session_created}\t#{pane_dead}\t#{pane_pid}"
        proc = self.tmux("list-panes", "-a", "-F", fmt, check=False)
        if proc.returncode != 0:
            return []  # no server on our socket: nothing is running
        from datetime import UTC, datetime

        resources = []
        for line in proc.stdout.splitlines():
            name, created, dead, pid = (line.split("\t") + ["", "", "", ""])[:4]
            run_id = name.rsplit("-", 1)[0] if "-" in name else None
            resources.append(
                Resource(
                    backend=self.name,
                    kind="tmux-session",
                    id=name,
                    state="exited" if dead == "1" else "running",
                    run_id=run_id,
                    job_id=name,
                    started_at=datetime.fromtimestamp(int(created), UTC) if created.isdigit() else None,
                    detail={"socket": self.socket, "pid": pid},
                )
            )
        return resources

    def destroy_resource(self, resource: Resource) -> None:
        self.tmux("kill-session", "-t", f"={resource.id}", check=False)

    def log_lines(self, job: Job, limit: int = 500) -> list[str]:
        return console_tail(work_dir(self.settings, job), limit)

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        return TmuxTarget(("-L", self.socket), job.id)

    @staticmethod
    def _status(work: Path) -> pipeline.PipelineResult:
        files = {}
        for name in pipeline.STATUS_FILES:
            try:
                files[name] = (work / name).read_text()
            except FileNotFoundError:
                files[name] = None
        return pipeline.parse_status(files)


def console_tail(work: Path, limit: int) -> list[str]:
    """The last `limit` lines of a job's piped pane output as written: split at line feeds only, carriage
    returns and escape sequences kept for the viewer to draw (a progress bar is one line)."""
    try:
        with open(work / pipeline.CONSOLE_LOG, encoding="utf-8", errors="replace", newline="\n") as fh:
            return [line.rstrip("\r\n") for line in deque(fh, maxlen=limit)]
    except FileNotFoundError:
        return []


def _step_error(status: pipeline.PipelineResult) -> str:
    if status.run_exit not in (None, 0):
        return f"agent step exited with code {status.run_exit}"
    if status.grade_exit not in (None, 0):
        return f"grade step exited with code {status.grade_exit}"
    return f"pipeline exited with code {status.exit_code}"


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)
