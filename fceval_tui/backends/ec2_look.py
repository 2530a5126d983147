"""The EC2 status board's rounds on the instances themselves: one Run Command per 50 instances
(SendCommand's limit), for instances new on the board and then every `LOOK_SECONDS`, that

- lets the session user into every job's tmux server there (the agent creates that user at the first
  session, possibly after the launch; see remote_tmux), and
- says which pipelines ended without a report: one killed by SIGKILL or a reboot runs no trap, and
  one on a machine whose `aws` CLI is missing or broken reports nothing. Its pane is dead (the session
  keeps it: remain-on-exit) or its tmux server is gone; the `done` file, when written, gives the exit code.

The answers are read at later refreshes with one ListCommandInvocations (Details) per command. A
plugin's output there is at most 2,500 characters (API reference: CommandPlugin), so the script prints
only the jobs that ended, a short line each. An answer counts only for the attempts watched when the
command was sent: an attempt started later on the same instance (a pool's retry) is not judged by it.
SendCommand refuses the whole call when one instance's agent is offline (InvalidInstanceId): the round
then asks DescribeInstanceInformation which are online and sends to those alone.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fceval_tui.backends import remote_tmux
from fceval_tui.backends.aws import AWS_ERRORS, chunks, classify, error_code, online_instances
from fceval_tui.domain import pipeline
from fceval_tui.errors import BackendError, TransientError, UserError

log = logging.getLogger(__name__)

LOOK_SECONDS = 30.0  # between two rounds on an instance
COMMAND_TARGETS = 50  # instance ids per SendCommand
FORGET_AFTER = 600.0  # a command still unanswered then is given up (its instances get later rounds)
_UNFINISHED = ("Pending", "InProgress", "Delayed", "Cancelling")  # invocation statuses still moving


@dataclass(frozen=True)
class Ended:
    """A pipeline found ended by a round: with its exit code when it wrote `done`, else None (it died)."""

    exit_code: int | None


@dataclass
class _Sent:
    at: float
    instances: list[str]
    keys: dict[str, tuple[str, str]]  # attempt key -> (instance id, job id), as watched when sent


class Looks:
    """Rounds for one board; called with the board's lock held."""

    def __init__(self, aws, work_root: str, session_user: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.aws = aws  # its ssm client at each call: renewed credentials bring new clients
        self.script = look_script(work_root, session_user)
        self.clock = clock
        self.every = LOOK_SECONDS
        self._last: dict[str, float] = {}  # instance id -> when a round was last sent to it
        self._sent: dict[str, _Sent] = {}  # command id -> what it was sent for
        self._ended: dict[str, Ended] = {}

    def ended(self, key: str) -> Ended | None:
        return self._ended.get(key)

    def forget(self, key: str) -> None:
        self._ended.pop(key, None)

    def round(self, running: set[str], watched: Mapping[str, tuple[str, str]]) -> None:
        """Read the answers that came in, then send to the `running` instances that are due. `watched`:
        attempt key -> (instance id, job id) of every attempt on the board."""
        self._read(watched)
        now = self.clock()
        on = {instance for instance, _ in watched.values()}
        self._last = {i: at for i, at in self._last.items() if i in on}
        # Not while an earlier round's answer is unread: an outage must not pile up commands to read.
        waiting = {instance for sent in self._sent.values() for instance in sent.instances}
        since = {i: now - self._last.get(i, float("-inf")) for i in running & on - waiting}
        # When one is due, those half-way there come along: instances first seen at different refreshes
        # fall into step instead of costing a command each per round.
        due = (
            sorted(i for i, age in since.items() if age > self.every / 2)
            if max(since.values(), default=0) > self.every
            else []
        )
        for batch in chunks(due, COMMAND_TARGETS):
            self._send(list(batch), {k: w for k, w in watched.items() if w[0] in batch}, now)

    def _send(self, instance_ids: list[str], keys: dict[str, tuple[str, str]], now: float) -> None:
        try:
            command_id = self._send_command(instance_ids)
        except AWS_ERRORS as exc:
            if error_code(exc) != "InvalidInstanceId":
                # The next round tries again; status goes on without it meanwhile.
                log.info("%s", classify(exc, f"ssm:SendCommand (look) to {len(instance_ids)} instances"))
                return
            online = self._online(instance_ids)
            self._last.update(dict.fromkeys(instance_ids, now))  # the offline ones wait for the next round
            instance_ids = [i for i in instance_ids if i in online]
            if not instance_ids:
                return
            try:
                command_id = self._send_command(instance_ids)
            except AWS_ERRORS as again:
                log.info("%s", classify(again, f"ssm:SendCommand (look) to {len(instance_ids)} instances"))
                return
        self._last.update(dict.fromkeys(instance_ids, now))
        self._sent[command_id] = _Sent(now, instance_ids, {k: w for k, w in keys.items() if w[0] in instance_ids})

    def _send_command(self, instance_ids: list[str]) -> str:
        reply = self.aws.ssm.send_command(
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [self.script]},
            Comment="fceval-tui: open the jobs' tmux servers to the session user; which pipelines ended",
        )
        return reply["Command"]["CommandId"]

    def _online(self, instance_ids: list[str]) -> set[str]:
        try:
            return online_instances(self.aws.ssm, instance_ids, "look")
        except (BackendError, UserError, *AWS_ERRORS) as exc:  # a hint only: the next round asks again
            log.info("%s", exc)
            return set()

    def _read(self, watched: Mapping[str, tuple[str, str]]) -> None:
        for command_id, sent in list(self._sent.items()):
            try:
                pages = self.aws.ssm.get_paginator("list_command_invocations").paginate(
                    CommandId=command_id, Details=True
                )
                invocations = [inv for page in pages for inv in page["CommandInvocations"]]
            except AWS_ERRORS as exc:
                log.info("%s", classify(exc, f"ssm:ListCommandInvocations {command_id} (look)"))
                continue
            for inv in invocations:
                if inv["Status"] == "Success":
                    self._take(inv["InstanceId"], _output(inv), sent, watched)
            unfinished = any(inv["Status"] in _UNFINISHED for inv in invocations)
            if not unfinished or self.clock() - sent.at > FORGET_AFTER:
                del self._sent[command_id]

    def _take(self, instance_id: str, output: str, sent: _Sent, watched: Mapping[str, tuple[str, str]]) -> None:
        found = parse_look(output)
        for key, (instance, job_id) in sent.keys.items():
            if instance == instance_id and job_id in found and watched.get(key) == (instance, job_id):
                self._ended[key] = found[job_id]


def look_script(work_root: str, user: str) -> str:
    """Root's shell: for every job's directory under `work_root`, open its tmux server to `user`, then
    print `done JOB CODE` for a pipeline that wrote `done`, or `ended JOB` for one whose pane is dead or
    whose server is gone (no answer twice, a second apart: a busy server is not a gone one). `done` is
    read again after the pane: a pipeline writes it before it exits, so a pane dead before that second
    read with no `done` then means none is coming."""
    q = shlex.quote
    socket = remote_tmux.SOCKET_NAME
    grant = remote_tmux.grant_script(socket, user)  # relative: run in each job's dir
    pane = f'tmux -S {socket} display-message -p -t "=$job:" {q("#{pane_dead}")} 2>/dev/null'
    done = pipeline.DONE_FILE
    return (
        f"for d in {q(work_root.rstrip('/'))}/*/; do "
        f'[ -f "${{d}}{pipeline.SCRIPT_NAME}" ] || continue; job=$(basename "$d"); '
        f'(cd "$d" || exit 0; if [ -S {socket} ]; then {grant}; fi; '
        f"[ -f {done} ] || pane=$({pane} || {{ sleep 1; {pane}; }}); "
        f'if [ -f {done} ]; then echo "done $job $(cat {done})"; elif [ "$pane" != 0 ]; then echo "ended $job"; fi); '
        "done; exit 0"
    )


def upload_error(transport, work: str) -> str:
    """What the pipeline's failed upload said (`pipeline.UPLOAD_ERROR` in `work`), read from the instance
    through Run Command: the board's reports carry no text, so this is asked only once uploads are missing."""
    try:
        result = transport.run(["cat", f"{work}/{pipeline.UPLOAD_ERROR}"], timeout=60)
    except (TransientError, TimeoutError) as exc:
        log.info("reading %s on the instance: %s", pipeline.UPLOAD_ERROR, exc)
        return ""
    return result.stdout.strip() if result.ok else ""


def parse_look(output: str) -> dict[str, Ended]:
    """Job id -> what `look_script` printed of it (other lines, such as a truncated last one, are skipped)."""
    found: dict[str, Ended] = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "done" and words[2].isdigit():
            found[words[1]] = Ended(int(words[2]))
        elif len(words) == 2 and words[0] == "ended":
            found[words[1]] = Ended(None)
    return found


def _output(invocation: dict) -> str:
    plugins = invocation.get("CommandPlugins") or [{}]
    return plugins[0].get("Output", "")
