"""The job pipeline as a POSIX sh script, identical on every backend.

It runs the agent step, then (if that succeeded and a grade command is set) the grade step, packs
the artifacts, runs the backend's upload lines, and leaves plain files in its work directory that
any backend can read back, even through a transport that loses exit codes:

    phase        running | grading | uploading | done   (replaced atomically)
    run.exit     exit code of the agent step
    grade.exit   exit code of the grade step (absent when it did not run)
    done         the job's exit code, written last: its presence means the pipeline finished
    upload.err   the first failed upload's error, on one line (absent when every upload worked)
    out/run.tar.gz, out/grading_report.json.gz           what the backend stores per the layout

Where a backend gives it a `report` function, the pipeline also reports each change where the
console reads all of a run's jobs at once (`report NAME`): `REPORTED_GRADING`, `REPORTED_UPLOADING`,
then `exit-CODE` after the `done` file, or `REPORTED_DIED` when a signal ends it unfinished.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from fceval_tui.domain.artifacts import GRADING_REPORT
from fceval_tui.domain.states import JobState
from fceval_tui.domain.template import ENV_PREFIX

PHASE_FILE = "phase"
RUN_EXIT = "run.exit"
GRADE_EXIT = "grade.exit"
DONE_FILE = "done"
UPLOAD_ERROR = "upload.err"  # written by a backend's upload lines (backends/manifest.py)
# Starts the stderr line carrying a failed upload's error (as in UPLOAD_ERROR): where a job's output goes
# to CloudWatch Logs (ECS, Batch), the console finds the error there (`upload_error_in`).
UPLOAD_FAILED = "fceval-tui: upload failed: "
RUN_ARCHIVE = "out/run.tar.gz"
REPORT_ARCHIVE = "out/grading_report.json.gz"
SCRIPT_NAME = "pipeline.sh"
ENV_FILE = "job.env"  # the job's values, NAME=value a line: data the script exports, never parses
CONSOLE_LOG = "console.log"  # the pane's output, piped next to the status files
HISTORY_LIMIT = 50000  # scrollback kept by every job's tmux session
REPORTED_GRADING, REPORTED_UPLOADING, REPORTED_DIED = "grading", "uploading", "died"
REPORTED_EXIT = "exit-"  # followed by the job's exit code


_PHASE_STATES = {
    "running": JobState.RUNNING,
    "grading": JobState.GRADING,
    "uploading": JobState.UPLOADING,
    "done": JobState.UPLOADING,
    "starting": JobState.RUNNING,
}


@dataclass(frozen=True)
class PipelineResult:
    phase: str
    run_exit: int | None
    grade_exit: int | None
    exit_code: int | None
    upload_error: str = ""

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    @property
    def state(self) -> JobState:
        """The job state this phase of the pipeline corresponds to."""
        return _PHASE_STATES.get(self.phase, JobState.RUNNING)


def render(
    work_dir: str,
    artifacts_dir: str,
    run_command: str,
    grade_command: str | None,
    upload: str = "",
    banner: str = "",
    run_as: str | None = None,
    report: str = "",
) -> str:
    """`run_command`/`grade_command` are rendered templates (they read the job's values from the
    environment: `ENV_FILE` in the work directory, or the container's environment where the backend
    sets it); `upload` and `report` (a shell function `report NAME`, see the module doc) are trusted
    shell built by a backend with shlex.quote. `run_as`: a user the run and grade steps drop to
    (`runuser`, environment kept), in that user's home and with umask 077, while the status files and
    uploads stay with the pipeline's own user; the artifacts are read for packing as `run_as` too, so a
    link the job made never leads the pipeline's user elsewhere (a warm pool's jobs, see
    backends/pool_scripts)."""
    q = shlex.quote
    grade = grade_command or ""
    pack = f"tar -czf {RUN_ARCHIVE} -C {q(artifacts_dir)} ."
    keep_report = f"gzip -c {q(artifacts_dir + '/' + GRADING_REPORT)} > {REPORT_ARCHIVE}"
    if run_as:
        as_user = f"runuser -u {q(run_as)} --"
        step = 'umask 077; cd "$HOME" || exit 97; '
        run_command = f"{as_user} sh -c {q(step + run_command)}"
        grade_command = f"{as_user} sh -c {q(step + grade)}" if grade else None
        pack = f"{as_user} tar -czf - -C {q(artifacts_dir)} . > {RUN_ARCHIVE}"
        keep_report = f"{as_user} gzip -c {q(artifacts_dir + '/' + GRADING_REPORT)} > {REPORT_ARCHIVE}"
    return f"""#!/bin/sh
# {banner or "fceval-tui pipeline"}
cd {q(work_dir)} || exit 97
if [ -f {ENV_FILE} ]; then
  while IFS= read -r kv || [ -n "$kv" ]; do
    case $kv in {ENV_PREFIX}*=*) export "$kv" ;; esac
  done < {ENV_FILE}
fi
mkdir -p {q(artifacts_dir)} out
phase() {{ printf '%s\\n' "$1" > {PHASE_FILE}.tmp && mv {PHASE_FILE}.tmp {PHASE_FILE}; }}
{report.strip() or "report() { :; }"}
trap 'report {REPORTED_DIED}; exit 1' HUP INT TERM
phase running
( {run_command}
)
rc=$?
printf '%s\\n' "$rc" > {RUN_EXIT}
code=$rc
if [ "$rc" -eq 0 ] && [ -n {q(grade)} ]; then
  phase grading
  report {REPORTED_GRADING}
  ( {grade_command or ":"}
  )
  grc=$?
  printf '%s\\n' "$grc" > {GRADE_EXIT}
  code=$grc
fi
phase uploading
report {REPORTED_UPLOADING}
{pack} || echo 'fceval-tui: packing artifacts failed' >&2
if [ -f {q(artifacts_dir + "/" + GRADING_REPORT)} ]; then
  {keep_report}
fi
{upload}
phase done
printf '%s\\n' "$code" > {DONE_FILE}.tmp && mv {DONE_FILE}.tmp {DONE_FILE}
trap - HUP INT TERM
report "{REPORTED_EXIT}$code"
echo "fceval-tui: pipeline finished with exit code $code"
"""


def env_file_text(env: dict[str, str]) -> str:
    """`ENV_FILE`'s content (values are single-line: `template.job_environment` checks it)."""
    return "".join(f"{name}={value}\n" for name, value in env.items())


def parse_status(files: dict[str, str | None]) -> PipelineResult:
    """Read back the status files (name -> content or None when absent)."""

    def as_int(name: str) -> int | None:
        text = (files.get(name) or "").strip()
        return int(text) if text.lstrip("-").isdigit() else None

    return PipelineResult(
        phase=(files.get(PHASE_FILE) or "").strip() or "starting",
        run_exit=as_int(RUN_EXIT),
        grade_exit=as_int(GRADE_EXIT),
        exit_code=as_int(DONE_FILE),
        upload_error=(files.get(UPLOAD_ERROR) or "").strip(),
    )


def relay_upload_error() -> str:
    """Shell printing `UPLOAD_ERROR`'s text as an `UPLOAD_FAILED` line on stderr, when an upload failed (for
    a process whose output is logged while the pipeline's own goes elsewhere, such as a tmux pane)."""
    said = f'"$(cat {UPLOAD_ERROR})"'
    return f"if [ -f {UPLOAD_ERROR} ]; then printf '%s%s\\n' {shlex.quote(UPLOAD_FAILED)} {said} >&2; fi"


def upload_error_in(lines: Iterable[str]) -> str:
    """The first failed upload's error among a job's output lines ("" when none says so)."""
    for line in lines:
        if line.startswith(UPLOAD_FAILED):
            return line[len(UPLOAD_FAILED) :].strip()
    return ""


STATUS_FILES = (PHASE_FILE, RUN_EXIT, GRADE_EXIT, DONE_FILE, UPLOAD_ERROR)
