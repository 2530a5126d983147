"""Two jobs on one pool instance: what one job's harness can do to the other's (nothing), and what is left
of a job after its cleanup (nothing). Real Unix users on this machine; Run Command runs as root here, as
the agent does on an instance (tests/helpers/ssm_double.py).

The victim publishes where its things are (work dir, artifacts, harness and daemon pids, a file in a
shared temporary directory) and waits; the attacker, a job of the same run on the same instance, tries
each way in and reports; the test then checks what root's pipeline did with the attacker's own files."""

from __future__ import annotations

import os
import pwd
import threading
from pathlib import Path

import pytest

from fceval_tui.backends import pool_scripts
from fceval_tui.backends.ec2_pool import Ec2PoolBackend
from fceval_tui.domain.states import JobState
from fceval_tui.ledger_pools import READY, PoolBook
from fceval_tui.services import pool as pools
from fceval_tui.services.runner import Runner
from tests.helpers.aws import spec
from tests.helpers.pools import PYTHON, wait_for
from tests.helpers.ssm_double import mount_calls

pytestmark = pytest.mark.skipif(PYTHON is None, reason="no Python that an unprivileged job user can run")

ATTEMPTS = (
    "list-work-dir",
    "read-job-env",
    "read-pipeline",
    "read-console-log",
    "read-status",
    "list-artifacts",
    "read-artifact",
    "write-work-dir",
    "write-artifacts",
    "tmux-victim-socket",
    "tmux-own-socket",
    "signal-harness",
    "signal-daemon",
    "signal-pipeline",
    "read-environ",
    "read-temp-file",
    "link-in-own-work-dir",
)

HARNESS = r"""#!/bin/sh
# $1 role (the task id), $2 the job id, $3 the artifacts dir
share=@SHARE@
root=@ROOT@
case $1 in
victim*)
  echo "secret of $2" > "$3/secret.txt"
  echo "secret of $2" > "$share/tmp/$2.secret"
  sleep 600 &
  sleeper=$!
  setsid sh -c 'exec sleep 3000' </dev/null >/dev/null 2>&1 &
  daemon=$!
  p=$$
  while [ "$p" -gt 1 ]; do
    [ "$(awk '/^Uid:/{print $2}' /proc/$p/status)" = 0 ] && break
    p=$(awk '/^PPid:/{print $2}' /proc/$p/status)
  done
  printf 'v_job=%s\nv_art=%s\nv_pid=%s\nv_daemon=%s\nv_root=%s\nv_tmp=%s\n' \
    "$2" "$3" "$sleeper" "$daemon" "$p" "$share/tmp/$2.secret" > "$share/victim.tmp"
  chmod 0644 "$share/victim.tmp" && mv "$share/victim.tmp" "$share/victim"
  while [ ! -e "$share/release-victim" ]; do sleep 0.1; done
  kill "$sleeper"
  exit 0 ;;
attacker*)
  while [ ! -e "$share/victim" ]; do sleep 0.1; done
  . "$share/victim"
  bw=$root/$v_job
  out=$share/report.tmp
  : > "$out"
  try() {
    name=$1; shift
    if "$@" >/dev/null 2>&1; then echo "$name ALLOWED" >> "$out"; else echo "$name refused" >> "$out"; fi
  }
  try list-work-dir ls "$bw"
  try read-job-env cat "$bw/job.env"
  try read-pipeline cat "$bw/pipeline.sh"
  try read-console-log cat "$bw/console.log"
  try read-status cat "$bw/phase"
  try list-artifacts ls "$v_art"
  try read-artifact cat "$v_art/secret.txt"
  try write-work-dir touch "$bw/written-by-attacker"
  try write-artifacts touch "$v_art/written-by-attacker"
  try tmux-victim-socket tmux -S "$bw/tmux.sock" list-sessions
  try tmux-own-socket tmux -S "$root/$2/tmux.sock" list-sessions
  try signal-harness kill -0 "$v_pid"
  try signal-daemon kill -0 "$v_daemon"
  try signal-pipeline kill -0 "$v_root"
  try read-environ cat "/proc/$v_pid/environ"
  try read-temp-file cat "$v_tmp"
  # root writes run.exit in this job's work dir once this harness ends: a link there would be followed
  try link-in-own-work-dir ln -s "$bw/written-through-attacker" "$root/$2/run.exit"
  # every command line this user can read (all of them where /proc is not mounted with hidepid)
  for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f" 2>/dev/null; echo; done > "$share/cmdlines.tmp"
  chmod 0644 "$share/cmdlines.tmp" && mv "$share/cmdlines.tmp" "$share/cmdlines"
  chmod 0644 "$out" && mv "$out" "$share/report"
  while [ ! -e "$share/release-attacker" ]; do sleep 0.1; done
  exit 0 ;;
esac
"""


def _alive(pid: int) -> bool:
    """Running, or stopped: a zombie is dead (killed, waiting for init to reap it, which can be slow)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def test_one_job_cannot_touch_another_on_the_same_instance(pool_env, ec2_machine):
    make, ledger, name = pool_env
    share = ec2_machine.root / "share"
    (share / "tmp").mkdir(parents=True)
    for path in (share, share / "tmp"):
        path.chmod(0o1777)  # like /tmp: both jobs' users may write here
    script = share / "harness.sh"
    script.write_text(HARNESS.replace("@SHARE@", str(share)).replace("@ROOT@", ec2_machine.work_root))
    script.chmod(0o755)
    settings = make(
        FCEVAL_RUN_COMMAND=f"sh {script} {{task_id}} {{job_id}} {{artifacts_dir}}",
        FCEVAL_GRADE_COMMAND="sh -c 'echo 1 > \"$0/grading_report.json\"' {artifacts_dir}",
        FCEVAL_POOL_VCPUS_PER_JOB=str(max(1, (os.cpu_count() or 2) // 2)),  # two slots on the one instance
    )
    (instance,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]
    assert instance.slots >= 2
    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    backend = Ec2PoolBackend(run_settings, ledger=ledger)
    backend.poll_interval = 0.05
    runner = Runner(ledger, run_settings.replace(max_attempts=1), backend, backoff_base=0.01)
    run, (victim, attacker) = runner.create_run([spec("victim"), spec("attacker")])
    driver = threading.Thread(target=runner.run, args=(run.id,))
    driver.start()
    try:
        report = wait_for(lambda: (share / "report").exists() and (share / "report").read_text(), "the attack")
        published = dict(line.split("=", 1) for line in (share / "victim").read_text().splitlines())
        results = dict(line.split() for line in report.splitlines())
        assert sorted(results) == sorted(ATTEMPTS)
        assert {k: v for k, v in results.items() if v != "refused"} == {}

        # The attempts were real: the victim's processes ran, as its user, and root's pipeline above them.
        victim_uid = pwd.getpwnam(pool_scripts.job_user(victim.id)).pw_uid
        daemon, harness_pid, pipeline_pid = (int(published[k]) for k in ("v_daemon", "v_pid", "v_root"))
        assert _uid_of(daemon) == victim_uid and _uid_of(harness_pid) == victim_uid and _uid_of(pipeline_pid) == 0
        assert os.getsid(daemon) != os.getsid(harness_pid)  # the daemon escaped its job's session

        # The instance was asked to hide users' processes from each other (the double records it: the host's
        # /proc is not remounted). Whatever a job can still see, no command line carries another's secrets.
        assert "-o remount,hidepid=invisible /proc" in mount_calls(ec2_machine)
        cmdlines = (share / "cmdlines").read_text()
        env = (Path(ec2_machine.work_root) / victim.id / "job.env").read_text()
        inbox = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("FCEVAL_JOB_UPLOAD_PREFIX="))
        assert inbox not in cmdlines and inbox.rsplit("-", 1)[1] not in cmdlines  # its token
        assert f"secret of {victim.id}" not in cmdlines
        if "hidepid" not in Path("/proc/mounts").read_text():
            assert f"victim {victim.id}" in cmdlines  # this host shows them: the check above saw the victim

        (share / "release-attacker").touch()
        wait_for(lambda: ledger.get_job(attacker.id).state.is_final, "the attacker's job ends")
        victim_work = Path(ec2_machine.work_root) / victim.id
        assert sorted(p.name for p in victim_work.iterdir() if "attacker" in p.name) == []
        assert not any("attacker" in p.name for p in Path(published["v_art"]).iterdir())
        assert _alive(daemon)
    finally:
        (share / "release-attacker").touch()
        (share / "release-victim").touch()
        driver.join(timeout=120)
    assert not driver.is_alive()
    assert ledger.get_job(victim.id).state == JobState.SUCCEEDED, ledger.get_job(victim.id).error
    assert not _alive(daemon)  # gone with the victim's cleanup, though it left the job's session
    for job in (victim, attacker):
        with pytest.raises(KeyError):
            pwd.getpwnam(pool_scripts.job_user(job.id))
        assert not [p for p in Path(ec2_machine.work_root).iterdir() if p.name.startswith(job.id)]
    assert not (share / "tmp" / f"{victim.id}.secret").exists()  # its files in shared temporary dirs too
    (after,) = PoolBook(ledger).instances(name)
    assert (after.state, after.jobs) == (READY, ())
