"""The pipeline in tmux on cloud compute (EC2 through SSM, ECS through ECS Exec): the shell that
starts it and the shell that opens its tmux server to the session user.

One tmux server per job, on an explicit socket in the job's work directory (`socket_path`), used
with `tmux -S` on every path: launch, mirror, tail, attach. The default socket depends on
the user (`/tmp/tmux-UID/default`), and on EC2 the pipeline is started by Run Command, as root,
while Session Manager sessions (tail, the live mirror, attach) run as `ssm-user`: with default
sockets those would look at a server of their own and find "no server running".

A root-owned server lets another user in only when (1) the user can reach and open the socket and
(2) tmux >= 3.3 has the user on its access list (`server-access -a`; root and the owner are always
allowed). So the launch (as root) puts the work directory and the socket in the group `TMUX_GROUP`
(0710 and 0660: the group may reach and open the socket, nobody else anything) and, once
`grant_user` exists, the launch and the EC2 status board's access rounds (ec2_board, as root) add
it to that group and to the server's access list.
This grants no more than the session user already has: on EC2 the agent gives ssm-user
passwordless sudo.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Callable

from fceval_tui.domain import pipeline

EXIT_NO_TMUX = 4
EXIT_NO_SCRIPT = 3
TMUX_GROUP = "fceval-tmux"  # may open the jobs' tmux sockets (see the module doc)
SOCKET_NAME = "tmux.sock"


def socket_path(work: str) -> str:
    return f"{work}/{SOCKET_NAME}"


def tmux_args(work: str) -> tuple[str, ...]:
    """tmux's socket selection for the job whose work directory is `work`."""
    return ("-S", socket_path(work))


def bundle(files: dict[str, str]) -> bytes:
    """A tar.gz of `files` (name -> text), each readable by its owner only, for `launch_script`'s stdin."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def launch_script(
    work: str,
    session: str,
    fetch: Callable[[str, str], str] | None = None,
    *,
    socket: str | None = None,
    grant_user: str | None = None,
) -> str:
    """Shell that installs the pipeline and its values in `work` and starts it in tmux, unless it
    already runs there.

    The files come from `fetch(name, path)`, trusted shell (built with shlex.quote) copying the file
    `name` to the quoted `path`; without `fetch`, from stdin, as a `bundle` of the script and
    `pipeline.ENV_FILE`. `socket`: the tmux server's socket (`socket_path(work)`); None is tmux's
    default socket. `grant_user`: the user that sessions run as (see the module doc). Exit codes:
    4 tmux missing, 3 the files could not be installed."""
    q = shlex.quote
    tmux = ["tmux", "-S", socket] if socket else ["tmux"]
    target = f"={session}"
    script = f"{work}/{pipeline.SCRIPT_NAME}"
    env_file = f"{work}/{pipeline.ENV_FILE}"
    conf = f"{work}/tmux.conf"
    if fetch is None:
        # Owner-only files (-o: owned by whoever unpacks, not by the archive's uid).
        install = [f"(umask 077 && tar -xzof - -C {q(work)}) || exit {EXIT_NO_SCRIPT}"]
    else:
        install = [
            fetch(pipeline.SCRIPT_NAME, q(script)) + f" || exit {EXIT_NO_SCRIPT}",
            f"(umask 077 && {fetch(pipeline.ENV_FILE, q(env_file))}) || exit {EXIT_NO_SCRIPT}",
        ]
    lines = [
        # On EC2, user data may still be installing tmux when the SSM agent comes online.
        "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 </dev/null; fi",
        f"mkdir -p {q(work)} || exit 2",
        f"command -v tmux >/dev/null 2>&1 || {{ echo 'tmux is not installed' >&2; exit {EXIT_NO_TMUX}; }}",
        f"if {shlex.join(tmux)} has-session -t {q(target)} 2>/dev/null; then exit 0; fi",
        *install,
    ]
    if socket:
        lines.append(_group_access(work, socket))
    lines += [
        # Read when the job's tmux server starts: long history for the mirror, and the pane stays
        # after the pipeline exits so its last screen can still be seen.
        f"printf 'set -g history-limit {pipeline.HISTORY_LIMIT}\\nset -g remain-on-exit on\\n' > {q(conf)}",
        shlex.join(
            [*tmux, "-f", conf, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", work]
            + ["sleep 2147483647"]
        ),
    ]
    if socket:
        # tmux creates an explicit socket readable by its owner alone.
        lines.append(f"chgrp {TMUX_GROUP} {q(socket)} && chmod 0660 {q(socket)}")
        if grant_user:
            lines.append(grant_script(socket, grant_user))
    lines += [
        shlex.join([*tmux, "pipe-pane", "-o", "-t", target + ":", "cat >> " + q(f"{work}/{pipeline.CONSOLE_LOG}")]),
        shlex.join([*tmux, "respawn-pane", "-k", "-t", target + ":", "sh " + q(script)]),
    ]
    return "\n".join(lines)


def _group_access(work: str, socket: str) -> str:
    """Root's shell giving `TMUX_GROUP` the way to the socket (0710: enter, not list) and nothing else."""
    q = shlex.quote
    return (
        f"{{ getent group {TMUX_GROUP} >/dev/null || groupadd {TMUX_GROUP}; }} >/dev/null 2>&1; "
        f"chgrp {TMUX_GROUP} {q(work)} && chmod 0710 {q(work)} "
        f"|| echo 'fceval-tui: sessions will not reach {socket}: no group {TMUX_GROUP}' >&2"
    )


def grant_script(socket: str, user: str) -> str:
    """Root's shell letting `user`, once it exists, open the socket and use the server; silent, and
    quick when already done. Errors are ignored: before tmux 3.3 there is no `server-access`, and
    the socket's group is then the only check."""
    q = shlex.quote
    tmux = shlex.join(["tmux", "-S", socket])
    return (
        f"if id -u {q(user)} >/dev/null 2>&1; then "
        f"id -nG {q(user)} | tr ' ' '\\n' | grep -qx {TMUX_GROUP} || usermod -a -G {TMUX_GROUP} {q(user)}; "
        f"{tmux} server-access -l 2>/dev/null | grep -q {q('^' + user + ' ')} "
        f"|| {tmux} server-access -a {q(user)}; "
        "fi >/dev/null 2>&1"
    )


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
    with its code; EXIT_* above for what went wrong, EXIT_TTL when `ttl_seconds` pass first. A failed upload's
    error is repeated on its stderr: the pane's output is not the container's, which may go to CloudWatch Logs."""
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
{pipeline.relay_upload_error()}
code=$(cat {pipeline.DONE_FILE})
case $code in {EXIT_NO_WORK_DIR}|{EXIT_IMAGE_NO_TMUX}|{EXIT_IMAGE_NO_AWS}|{EXIT_TTL}|{EXIT_PANE_DIED}) code=1 ;; esac
sleep 2  # the last screen stays visible to mirrors for a moment
exit "$code"
"""


def socket_probe_script(sockets: list[str]) -> str:
    """Shell printing the first of `sockets` that exists (nothing when none does yet)."""
    words = " ".join(shlex.quote(s) for s in sockets)
    return f'for s in {words}; do if [ -S "$s" ]; then printf "%s\\n" "$s"; exit 0; fi; done'
