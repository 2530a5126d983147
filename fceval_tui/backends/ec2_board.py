"""The EC2 backend's status board: every watched job's phase and instance, for a handful of calls.

Why S3 and not Run Command: reading the status files through SSM costs SendCommand plus
GetCommandInvocation per job per poll, fails whenever SSM cannot reach the agent, and is cut at
24,000 bytes. Instead the pipeline reports each change as an empty object in its attempt's inbox
(`{inbox}/status/NAME`, see `pipeline.REPORTED_*`; the instance may only PutObject there), so a
refresh is:

- one ListObjectsV2 per run (1,000 keys a page) for every job's reports: the run's inbox prefix,
  read with the console's credentials (the instance cannot list). Only the inbox named in the
  attempt's manifest counts, and its name carries a token only that attempt knows, so one job's
  agent cannot forge another's report;
- one DescribeInstances per 200 watched instances (an `instance-id` filter, which unlike
  `InstanceIds` does not fail the whole call for one unknown id) for the liveness of all of them;
- for instances new on the board and then every `ec2_look.LOOK_SECONDS`, one Run Command per 50
  instances that opens the jobs' tmux servers to the session user and tells which pipelines ended
  without a report (SIGKILL, a reboot, no working `aws` CLI), read at a later refresh with one
  ListCommandInvocations per command: status never waits for it, and a pipeline gone without a
  word is seen within a round instead of at the job's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fceval_tui.backends.aws import chunks
from fceval_tui.backends.base import Observation, ResourceGone
from fceval_tui.backends.ec2_look import Ended, Looks
from fceval_tui.backends.manifest import UPLOAD_ENV
from fceval_tui.backends.status_board import StatusBoard
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import split_s3
from fceval_tui.domain.states import JobState

STATUS_DIR = "status"
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")
FILTER_VALUES = 200  # instance ids per DescribeInstances filter


def report_shell() -> str:
    """The pipeline's `report NAME`: an empty object at `{inbox}/status/NAME`, retried for about 7 s (not
    at all without an `aws` CLI): a report that cannot be written (KMS refused, S3 unreachable) is what the
    look rounds are for (ec2_look), so the pipeline does not stall on it."""
    target = f'"${UPLOAD_ENV}/{STATUS_DIR}/$1"'
    return "\n".join(
        [
            "report() {",
            '  command -v aws >/dev/null 2>&1 || { echo "fceval-tui: no aws CLI to report $1 with" >&2; return 1; }',
            "  for wait in 1 2 4; do",
            f"    aws s3 cp --only-show-errors - {target} </dev/null && return 0",
            '    sleep "$wait"',
            "  done",
            '  echo "fceval-tui: could not report $1" >&2',
            "}",
        ]
    )


@dataclass(frozen=True)
class Watched:
    """One attempt on the board: where it runs and the inbox its pipeline reports to."""

    instance_id: str
    inbox: str  # s3://bucket/fceval-tui/inbox/{run}/{job}-a{attempt}-{token}


@dataclass(frozen=True)
class Sighting:
    instance_state: str | None  # None: DescribeInstances does not know the instance
    reason: str
    reported: frozenset[str]
    ended: Ended | None = None  # what the last look round on the instance found (ec2_look)


def observation(sighting: Sighting, instance_id: str) -> Observation:
    """What one sighting means for the job: done (whatever became of the instance since), gone, or a phase."""
    exits = [
        name.removeprefix(pipeline.REPORTED_EXIT)
        for name in sighting.reported
        if name.startswith(pipeline.REPORTED_EXIT)
    ]
    codes = [int(code) for code in exits if code.isdigit()]
    if codes:
        return Observation(JobState.UPLOADING, done=True, exit_code=codes[0])
    if sighting.ended is not None and sighting.ended.exit_code is not None:  # finished, its report lost
        return Observation(JobState.UPLOADING, done=True, exit_code=sighting.ended.exit_code)
    state = sighting.instance_state
    if state is None:
        raise ResourceGone(f"instance {instance_id} no longer exists")
    if state in GONE_STATES:
        raise ResourceGone(f"instance {instance_id} is {state}" + (f" ({sighting.reason})" if sighting.reason else ""))
    if pipeline.REPORTED_DIED in sighting.reported:
        raise ResourceGone(f"the pipeline on {instance_id} ended without finishing (it was signalled)")
    if sighting.ended is not None:
        raise ResourceGone(
            f"the pipeline on {instance_id} is gone without finishing or reporting (killed, or the machine "
            "restarted): its tmux pane is dead"
        )
    if pipeline.REPORTED_UPLOADING in sighting.reported:
        return Observation(JobState.UPLOADING, detail=f"EC2 {state}")
    if pipeline.REPORTED_GRADING in sighting.reported:
        return Observation(JobState.GRADING, detail=f"EC2 {state}")
    return Observation(JobState.RUNNING, detail=f"EC2 {state}")


class Ec2Board(StatusBoard[Sighting]):
    """Keys are attempts (`attempt_key`), so several jobs may share an instance."""

    doing = "reading the EC2 status board"
    fetch_unseen = False  # one look costs the run's whole listing: a new job waits for the next refresh

    def __init__(
        self,
        aws,
        max_age: Callable[[], float],
        work_root: str,
        session_user: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_age, clock)
        self.aws = aws
        self.looks = Looks(aws, work_root, session_user, clock)
        self._where: dict[str, Watched] = {}

    def watch(self, key: str, watched: Watched) -> None:
        with self._lock:
            self._where[key] = watched
            self._watched.add(key)

    def watches(self, key: str) -> bool:
        with self._lock:
            return key in self._where

    def forget(self, key: str) -> None:
        super().forget(key)
        with self._lock:
            self._where.pop(key, None)
            self.looks.forget(key)

    def _fetch(self, keys: Sequence[str]) -> dict[str, Sighting]:
        where = {key: self._where[key] for key in keys if key in self._where}
        instances = self._instances(sorted({w.instance_id for w in where.values()}))
        reports = self._reports({_run_prefix(w.inbox) for w in where.values()})
        running = {i for i, (state, _) in instances.items() if state == "running"}
        self.looks.round(running, {k: (w.instance_id, job_of(k)) for k, w in self._where.items()})
        sightings = {}
        for key, w in where.items():
            bucket, prefix = split_s3(w.inbox)
            mine = f"{prefix}/{STATUS_DIR}/"
            names = frozenset(k[len(mine) :] for k in reports.get(bucket, ()) if k.startswith(mine))
            state, reason = instances.get(w.instance_id, (None, ""))
            sightings[key] = Sighting(state, reason, names, self.looks.ended(key))
        return sightings

    def _instances(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        paginator = self.aws.ec2.get_paginator("describe_instances")
        for batch in chunks(ids, FILTER_VALUES):
            pages = paginator.paginate(
                Filters=[{"Name": "instance-id", "Values": list(batch)}], PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                for reservation in page["Reservations"]:
                    for item in reservation["Instances"]:
                        reason = item.get("StateReason", {}).get("Message", "")
                        found[item["InstanceId"]] = (item["State"]["Name"], reason)
        return found

    def _reports(self, run_prefixes: set[tuple[str, str]]) -> dict[str, set[str]]:
        """Every key under each run's inbox, by bucket (one listing per run, paged by 1,000)."""
        keys: dict[str, set[str]] = {}
        paginator = self.aws.s3.get_paginator("list_objects_v2")
        for bucket, prefix in sorted(run_prefixes):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys.setdefault(bucket, set()).update(item["Key"] for item in page.get("Contents", ()))
        return keys


def attempt_key(job_id: str, attempt: int) -> str:
    return f"{job_id}-a{attempt}"


def job_of(key: str) -> str:
    return key.rpartition("-a")[0]


def _run_prefix(inbox: str) -> tuple[str, str]:
    bucket, prefix = split_s3(inbox)
    return bucket, prefix.rsplit("/", 1)[0] + "/"
