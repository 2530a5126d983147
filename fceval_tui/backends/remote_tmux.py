"""The pipeline in tmux on cloud compute (EC2 through SSM, ECS through ECS Exec): the shell that
starts it, the shell that reads its status, and what that status means."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from fceval_tui.backends.base import Observation, ResourceGone
from fceval_tui.domain import pipeline
from fceval_tui.domain.states import JobState

EXIT_NO_TMUX = 4
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


# Exit codes of `container_bootstrap` of its own (a pipeline exiting with one of them exits 1 instead).
EXIT_NO_WORK_DIR = 90
EXIT_IMAGE_NO_TMUX = 91
EXIT_IMAGE_NO_AWS = 92
EXIT_TTL = 93
EXIT_PANE_DIED = 94


def container_bootstrap(
    work: str, fallback: str, session: str, pipeline_text: str, ttl_seconds: int, artifacts_env: str
) -> str:
    """A container's main process: the pipeline in tmux on `{work dir}/tmux.sock`, held to a time-to-live.

    Runs as the image's user with the job's values in its environment (none in this text). The work
    dir is `work`, or `fallback` when the image's user cannot write there; `artifacts_env` (the
    artifacts directory's variable) is set under it. Waits for the pipeline's `done` file and exits
    with its code; EXIT_* above for what went wrong, EXIT_TTL when `ttl_seconds` pass first."""
    q = shlex.quote
    delimiter = "FCEVAL_PIPELINE_END"
    if any(line.strip() == delimiter for line in pipeline_text.splitlines()):
        raise ValueError(f"the pipeline contains the line {delimiter}")
    conf = f"set -g history-limit {pipeline.HISTORY_LIMIT}\\nset -g remain-on-exit on\\n"
    tmux = 'tmux -S "$work/tmux.sock"'
    target = q(f"={session}:")
    return f"""fail() {{ echo "fceval-tui: $2" >&2; exit "$1"; }}
work={q(work)}
if ! mkdir -p "$work" 2>/dev/null || [ ! -w "$work" ]; then
  work={q(fallback)}
  mkdir -p "$work" || fail {EXIT_NO_WORK_DIR} 'no writable work directory'
fi
cd "$work" || fail {EXIT_NO_WORK_DIR} 'no writable work directory'
command -v tmux >/dev/null 2>&1 || fail {EXIT_IMAGE_NO_TMUX} 'tmux is not installed in the image'
command -v aws >/dev/null 2>&1 || fail {EXIT_IMAGE_NO_AWS} 'the aws CLI is not installed in the image'
{artifacts_env}="$work/artifacts"; export {artifacts_env}
cat > {pipeline.SCRIPT_NAME} <<'{delimiter}'
{pipeline_text.rstrip(chr(10))}
{delimiter}
printf '{conf}' > tmux.conf
if ! {tmux} has-session -t {q("=" + session)} 2>/dev/null; then
  {tmux} -f tmux.conf new-session -d -s {q(session)} -x 200 -y 50 -c "$work" 'sleep 2147483647' ||
    fail {EXIT_IMAGE_NO_TMUX} 'tmux does not start'
  {tmux} pipe-pane -o -t {target} "cat >> '$work/{pipeline.CONSOLE_LOG}'"
  {tmux} respawn-pane -k -t {target} "sh '$work/{pipeline.SCRIPT_NAME}'"
fi
deadline=$(( $(date +%s) + {int(ttl_seconds)} ))
while [ ! -f {pipeline.DONE_FILE} ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail {EXIT_TTL} 'the time-to-live ran out'
  dead=$({tmux} display-message -p -t {target} '#{{pane_dead}}' 2>/dev/null || echo 1)
  if [ "$dead" = 1 ] && [ ! -f {pipeline.DONE_FILE} ]; then fail {EXIT_PANE_DIED} 'the pipeline ended unfinished'; fi
  sleep 1
done
code=$(cat {pipeline.DONE_FILE})
case $code in {EXIT_NO_WORK_DIR}|{EXIT_IMAGE_NO_TMUX}|{EXIT_IMAGE_NO_AWS}|{EXIT_TTL}|{EXIT_PANE_DIED}) code=1 ;; esac
sleep 2  # the last screen stays visible to mirrors for a moment
exit "$code"
"""


def socket_probe_script(sockets: list[str]) -> str:
    """Shell printing the first of `sockets` that exists (nothing when none does yet)."""
    words = " ".join(shlex.quote(s) for s in sockets)
    return f'for s in {words}; do if [ -S "$s" ]; then printf "%s\\n" "$s"; exit 0; fi; done'
