"""The shell a warm pool runs on its instances, as root through Run Command (see ec2_pool).

Isolation: each job on a pool instance has its own Unix user (`job_user`), created when the job
starts. The job's work directory stays root's, as on an instance of its own (status files, values, the
pipeline, the tmux socket; group `TMUX_GROUP`, mode 0710: only the session user may reach the socket),
so no job user can enter any work directory, its own included, nor leave a link there for root to
follow. What the job's user may write is a directory of its own next to it (`user_dir`: its home, with
the artifacts directory), owned by it and mode 0700. The pipeline runs as root in the job's own tmux
server and drops to the job's user for the harness's run and grade steps and for reading the artifacts
it packs (`pipeline.render(run_as=...)`), with umask 077, so that even what the job writes to the shared
temporary directories is its own to read. Whatever the job started or left is found by its uid when it
ends: cleanup kills the session and every process of that uid (daemons that left the session too),
deletes its files in the shared temporary directories, both directories and the user, then checks each
of those is gone: only then is the slot free again (a uid is reused by the next `useradd`).

The dead-man's switch: the pool's first-boot script starts a watcher that powers the instance off once
the time (epoch seconds) in its expiry file has passed, after which EC2 terminates it (shutdown
behaviour `terminate`). The console moves that time forward when a job starts (to the job's own TTL)
and sets it to the idle timeout when the last job leaves; without a console nothing moves it. The file
is named by the instance id, so a copy left in an image made from a pool instance ends nothing.
"""

from __future__ import annotations

import hashlib
import re
import shlex

from fceval_tui.backends.remote_tmux import EXIT_NO_TMUX, TMUX_GROUP, socket_path

EXIT_NO_RUNUSER = 5
_SAFE_USER = re.compile(r"[a-z][a-z0-9-]{0,28}")
# Shared writable places where a job may leave files; all are searched for its uid at cleanup.
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
WATCHER = "/usr/local/sbin/fceval-pool-ttl"
_IMDS = "http://169.254.169.254/latest"


def job_user(job_id: str) -> str:
    """The Unix user of a job on a pool instance (at most 32 characters, as useradd allows)."""
    name = "fj-" + job_id.lower()
    if _SAFE_USER.fullmatch(job_id.lower()) and len(name) <= 32:
        return name
    return "fj-" + hashlib.sha256(job_id.encode()).hexdigest()[:20]


def expiry_file(work_root: str, instance_id: str) -> str:
    return f"{work_root.rstrip('/')}/.pool/{instance_id}.expires"


def watcher_script(interval: int = 20) -> str:
    """The expiry watcher: powers off once the time in the file $1 (epoch seconds) has passed; a missing
    or unreadable file counts as passed (a dead-man's switch fails towards ending the instance)."""
    return "\n".join(
        [
            "#!/bin/sh",
            "# fceval-tui warm pool: power off once the time in $1 (epoch seconds) has passed",
            "while :; do",
            '  e=$(cat "$1" 2>/dev/null)',
            "  case $e in ''|*[!0-9]*) e=0 ;; esac",
            '  if [ "$(date +%s)" -ge "$e" ]; then shutdown -h now \'fceval-tui pool TTL reached\'; fi',
            f"  sleep {int(interval)}",
            "done",
        ]
    )


def watcher_lines(work_root: str, expires_epoch: int) -> tuple[str, ...]:
    """First-boot lines (after the work root exists) that start the expiry watcher, then cancel the
    plain `shutdown` the script began with: that one stays the switch if the watcher cannot start."""
    q = shlex.quote
    state = f"{work_root.rstrip('/')}/.pool"
    watcher = watcher_script()
    return (
        f"mkdir -p {q(state)} && chmod 0700 {q(state)}",
        f"tok=$(curl -s -X PUT {_IMDS}/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')",
        f'id=$(curl -s -H "X-aws-ec2-metadata-token: $tok" {_IMDS}/meta-data/instance-id)',
        f'f={q(state)}/"$id".expires',
        f'[ -s "$f" ] || printf "%s\\n" {int(expires_epoch)} > "$f"',
        f"cat > {WATCHER} <<'FCEVAL_WATCHER_END'\n{watcher}\nFCEVAL_WATCHER_END",
        f"chmod 0700 {WATCHER}",
        f'if [ -n "$id" ] && systemd-run --unit=fceval-pool-ttl {WATCHER} "$f"; then shutdown -c; fi',
    )


def set_expiry(work_root: str, instance_id: str, expires_epoch: int, *, later_only: bool) -> str:
    """Shell writing the instance's expiry (only if later than the current one with `later_only`) and
    printing `expires=<epoch>`, the time now in force."""
    return _write_expiry(
        work_root, instance_id, expires_epoch, f'[ {int(expires_epoch)} -gt "$old" ]' if later_only else "true"
    )


def job_started(work_root: str, instance_id: str, job_id: str, expires_epoch: int) -> str:
    """At a job's start, one step under the instance's expiry lock: count the job on the instance and
    move the expiry to the job's if that is later."""
    marker = shlex.quote(f"{_jobs_dir(work_root)}/{job_user(job_id)}")
    return _locked(
        work_root,
        [
            f'mkdir -p "$(dirname {marker})" && touch {marker} || exit 2',
            set_expiry(work_root, instance_id, expires_epoch, later_only=True),
        ],
    )


def job_ended(work_root: str, instance_id: str, job_id: str, idle_epoch: int) -> str:
    """At a job's end, under the same lock: uncount the job and, if no other job is counted, set the idle
    expiry (earlier than the job's). The instance decides, not the console's view of its slots: a job
    that claimed a slot and started meanwhile keeps its expiry."""
    jobs = _jobs_dir(work_root)
    marker = shlex.quote(f"{jobs}/{job_user(job_id)}")
    idle = f'[ -z "$(ls -A {shlex.quote(jobs)} 2>/dev/null)" ]'
    return _locked(work_root, [f"rm -f {marker}", _write_expiry(work_root, instance_id, idle_epoch, idle)])


def _jobs_dir(work_root: str) -> str:
    return f"{work_root.rstrip('/')}/.pool/jobs"


def _locked(work_root: str, lines: list[str]) -> str:
    """`lines` in a subshell holding the instance's expiry lock (flock is in util-linux, as runuser)."""
    lock = shlex.quote(f"{work_root.rstrip('/')}/.pool/lock")
    state = shlex.quote(f"{work_root.rstrip('/')}/.pool")
    return "\n".join(
        [f"mkdir -p {state} && chmod 0700 {state} || exit 2", "(", "flock 9 || exit 2", *lines, f") 9>{lock} || exit 2"]
    )


def _write_expiry(work_root: str, instance_id: str, expires_epoch: int, test: str) -> str:
    q = shlex.quote
    path = expiry_file(work_root, instance_id)
    write = f'printf "%s\\n" {int(expires_epoch)} > "$f.tmp" && mv "$f.tmp" "$f"'
    return "\n".join(
        [
            f"f={q(path)}",
            'mkdir -p "$(dirname "$f")" && chmod 0700 "$(dirname "$f")"',
            "old=$(cat \"$f\" 2>/dev/null); case $old in ''|*[!0-9]*) old=0 ;; esac",
            f"if {test}; then {write}; fi",
            'printf "expires=%s\\n" "$(cat "$f")"',
        ]
    )


def push_expiry(work_root: str, instance_ids: list[str], expires_epoch: int) -> str:
    """One script for many instances (one Run Command): each moves its own expiry to `expires_epoch` if
    that is later. An instance has only its own file (they are named by instance id), and one without
    it was never prepared: its switch stays as it is."""
    q = shlex.quote
    state = f"{work_root.rstrip('/')}/.pool"
    ids = " ".join(q(i) for i in instance_ids)
    return "\n".join(
        [
            f"for id in {ids}; do",
            f'  f={q(state)}/"$id".expires',
            '  [ -e "$f" ] || continue',
            "  old=$(cat \"$f\" 2>/dev/null); case $old in ''|*[!0-9]*) old=0 ;; esac",
            f'  if [ {int(expires_epoch)} -gt "$old" ]; then',
            f'    printf "%s\\n" {int(expires_epoch)} > "$f.tmp" && mv "$f.tmp" "$f" || exit 1',
            "  fi",
            "done",
        ]
    )


def prepare_script(work_root: str, instance_id: str, expires_epoch: int) -> str:
    """Once, when a new instance's agent is online: wait for the first boot to finish, check the tools,
    make the work root and the tmux group, hide users' processes from each other (`hide_processes`), set
    the idle expiry; prints `vcpus=N` and `expires=...`."""
    q = shlex.quote
    return "\n".join(
        [
            "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 </dev/null; fi",
            f"command -v tmux >/dev/null 2>&1 || {{ echo 'tmux is not installed' >&2; exit {EXIT_NO_TMUX}; }}",
            f"command -v runuser >/dev/null 2>&1 || {{ echo 'runuser is not installed' >&2; exit {EXIT_NO_RUNUSER}; }}",
            f"mkdir -p {q(work_root)} && chmod 0755 {q(work_root)} || exit 2",
            f"getent group {TMUX_GROUP} >/dev/null || groupadd {TMUX_GROUP} || exit 2",
            hide_processes(),
            set_expiry(work_root, instance_id, expires_epoch, later_only=False),
            'printf "vcpus=%s\\n" "$(nproc)"',
        ]
    )


# /proc already mounted so that users see only their own processes (kernel 5.8+ says `invisible`).
_PROC_HIDDEN = r"grep -Eq '^proc /proc proc [^ ]*hidepid=(2|invisible)' /proc/mounts"


def hide_processes() -> str:
    """Root's shell remounting /proc with hidepid, so a job's user cannot list, or read the command lines
    of, other users' processes (another job's included); root, and so the agent and cleanup, still sees
    all. Idempotent; kernels before 5.8 take `hidepid=2`. Until the next boot only: a pool instance keeps
    nothing across one (its watcher is not restarted either). A kernel that refuses leaves a warning."""
    return (
        f"{_PROC_HIDDEN} || mount -o remount,hidepid=invisible /proc 2>/dev/null "
        "|| mount -o remount,hidepid=2 /proc "
        "|| echo 'fceval-tui: /proc kept without hidepid: jobs on this instance can see the processes of others' >&2"
    )


def user_dir(work: str) -> str:
    """The job user's own directory next to the job's work directory: its home, with its artifacts."""
    return work.rstrip("/") + ".user"


def job_setup(work: str, user: str) -> str:
    """Before the job's pipeline is installed: its user (home: `user_dir`), that directory and its
    artifacts directory owned by the user, and the work directory root's."""
    q = shlex.quote
    home = user_dir(work)
    return "\n".join(
        [
            f"id -u {q(user)} >/dev/null 2>&1 || useradd -M -U -d {q(home)} -s /bin/sh {q(user)} || exit 2",
            f"mkdir -p {q(work)} {q(home)}/artifacts || exit 2",
            f"chown root:root {q(work)} && chmod 0700 {q(work)} || exit 2",
            f"chown {q(user)}:{q(user)} {q(home)} {q(home)}/artifacts && chmod 0700 {q(home)} {q(home)}/artifacts"
            " || exit 2",
        ]
    )


# Whether a process of "$uid" (real or effective) still lives. Zombies do not count: a killed process
# stays one until its parent (often init, once orphaned) reaps it, and it holds nothing of the job.
_LIVE_OF_UID = (
    """ps -e -o ruid=,euid=,stat= | awk -v u="$uid" '($1 == u || $2 == u) && $3 !~ /^Z/ {f=1} END {exit !f}'"""
)


def stop_job(work: str, user: str) -> str:
    """Kill the job's tmux server, whatever still runs in its pane's session (the pipeline, as root), and
    every process of the job's user (sets `uid` for what follows)."""
    q = shlex.quote
    tmux = shlex.join(["tmux", "-S", socket_path(work)])
    return "\n".join(
        [
            f"panes=$({tmux} list-panes -a -F '#{{pane_pid}}' 2>/dev/null)",
            f"{tmux} kill-server >/dev/null 2>&1",
            'for p in $panes; do pkill -KILL -s "$p" >/dev/null 2>&1; done',
            f"uid=$(id -u {q(user)} 2>/dev/null)",
            'if [ -n "$uid" ]; then',
            "  for i in 1 2 3 4 5 6 7 8 9 10; do",
            '    pkill -KILL -U "$uid"; pkill -KILL -u "$uid"',
            f"    {_LIVE_OF_UID} || break",
            "    sleep 0.2",
            "  done",
            "fi",
        ]
    )


def clean_job(work: str, user: str) -> str:
    """`stop_job`, then remove the job's files and user, and verify: exit 0 and `clean` when nothing of
    the job is left, else exit 1 and `left=...` naming what is."""
    q = shlex.quote
    temp = " ".join(TEMP_DIRS)
    tmux = shlex.join(["tmux", "-S", socket_path(work)])
    return "\n".join(
        [
            stop_job(work, user),
            'if [ -n "$uid" ]; then',
            f'  for d in {temp}; do [ -d "$d" ] && find "$d" -xdev -uid "$uid" -delete 2>/dev/null; done',
            f"  userdel {q(user)} >/dev/null 2>&1",
            f"  getent group {q(user)} >/dev/null && groupdel {q(user)} >/dev/null 2>&1",
            "fi",
            f"rm -rf {q(work)} {q(user_dir(work))}",
            "left=''",
            f'id -u {q(user)} >/dev/null 2>&1 && left="$left user"',
            f'[ -e {q(work)} ] && left="$left work-dir"',
            f'[ -e {q(user_dir(work))} ] && left="$left user-dir"',
            f'{tmux} has-session >/dev/null 2>&1 && left="$left tmux"',
            'if [ -n "$uid" ]; then',
            f'  {_LIVE_OF_UID} && left="$left processes"',
            f'  for d in {temp}; do [ -d "$d" ] && [ -n "$(find "$d" -xdev -uid "$uid" -print -quit 2>/dev/null)" ]'
            ' && left="$left files-in-$d"; done',
            "fi",
            'if [ -n "$left" ]; then echo "left=${left# }"; exit 1; fi',
            "echo clean",
        ]
    )


def output_value(stdout: str, name: str) -> str | None:
    """The value of a `name=value` line a script printed."""
    return next((line.split("=", 1)[1].strip() for line in stdout.splitlines() if line.startswith(name + "=")), None)
