"""The pipeline in tmux on cloud compute (EC2 through SSM, ECS through ECS Exec): the shell that
starts it, the shell that reads its status, and what that status means."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from fceval_tui.backends.base import Observation, ResourceGone
from fceval_tui.domain import pipeline
from fceval_tui.domain.states import JobState

EXIT_NO_TMUX = 4
TMUX_GROUP = "fceval-tmux"
EXIT_NO_SCRIPT = 3


def launch_script(work: str, session: str, fetch: Callable[[str, str], str]) -> str:
    """Shell that fetches the staged pipeline and its values and starts it in tmux, unless it already
    runs there.

    `fetch(name, path)` gives trusted shell (built with shlex.quote) copying the staged file `name`
    to the quoted `path`. Exit codes: 4 tmux missing, 3 a staged file could not be fetched."""
    q = shlex.quote
    target = f"={session}"
    script = f"{work}/{pipeline.SCRIPT_NAME}"
    env_file = f"{work}/{pipeline.ENV_FILE}"
    conf = f"{work}/tmux.conf"
    return "\n".join(
        [
            # On EC2, user data may still be installing tmux when the SSM agent comes online.
            "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1; fi",
            f"mkdir -p {q(work)} || exit 2",
            f"command -v tmux >/dev/null 2>&1 || {{ echo 'tmux is not installed' >&2; exit {EXIT_NO_TMUX}; }}",
            f"if tmux has-session -t {q(target)} 2>/dev/null; then exit 0; fi",
            fetch(pipeline.SCRIPT_NAME, q(script)) + f" || exit {EXIT_NO_SCRIPT}",
            f"(umask 077 && {fetch(pipeline.ENV_FILE, q(env_file))}) || exit {EXIT_NO_SCRIPT}",
            # Read when the (per-machine) tmux server starts: long history for the mirror, and
            # the pane stays after the pipeline exits so its last screen can still be seen.
            f"printf 'set -g history-limit {pipeline.HISTORY_LIMIT}\\nset -g remain-on-exit on\\n' > {q(conf)}",
            shlex.join(
                [
                    "tmux",
                    "-f",
                    conf,
                    "new-session",
                    "-d",
                    "-s",
                    session,
                    "-x",
                    "200",
                    "-y",
                    "50",
                    "-c",
                    work,
                    "sleep 2147483647",
                ]
            ),
            shlex.join(
                ["tmux", "pipe-pane", "-o", "-t", target + ":", "cat >> " + q(f"{work}/{pipeline.CONSOLE_LOG}")]
            ),
            shlex.join(["tmux", "respawn-pane", "-k", "-t", target + ":", "sh " + q(script)]),
        ]
    )


def status_script(work: str, session: str) -> str:
    """The pane state first, then the status files: a dead pane without `done` means the pipeline died."""
    q = shlex.quote
    pane = f"tmux display-message -p -t {q('=' + session + ':')} '#{{pane_dead}}' 2>/dev/null || echo gone"
    return f'printf "pane=%s\\n" "$({pane})"\n{pipeline.status_command(work)}'


def pane_state(stdout: str) -> str:
    return next((line[5:] for line in stdout.splitlines() if line.startswith("pane=")), "")


def observation(stdout: str, resource_id: str, check_gone: Callable[[str], None]) -> Observation:
    """Read the output of `status_script`. A dead pane without `done` means the pipeline died:
    `check_gone` raises ResourceGone first when the compute itself was reaped."""
    status = pipeline.parse_status_output(stdout)
    if status.done:
        return Observation(JobState.UPLOADING, done=True, exit_code=status.exit_code)
    pane = pane_state(stdout)
    if pane in ("1", "gone"):
        check_gone(resource_id)
        raise ResourceGone(f"the pipeline on {resource_id} ended without finishing (tmux pane: {pane})")
    return Observation(status.state, exit_code=status.run_exit)
