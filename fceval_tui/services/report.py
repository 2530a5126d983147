"""Results of finished runs: per agent x model (and dataset), how many jobs succeeded, how the others
failed (by error class), scores from the stored grading reports, durations and cost, each run's cost
over time; and, for two runs, each run's numbers side by side and the per-task differences. Blocking
(reads grading reports, local or S3)."""

from __future__ import annotations

import gzip
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fceval_tui.domain.grading import Score, score_of
from fceval_tui.domain.models import Job
from fceval_tui.domain.states import JobState
from fceval_tui.errors import UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services.cost_over_time import CostSeries, cost_over_time

ReportReader = Callable[[str], object]  # grading report URL or path -> parsed JSON


@dataclass
class Group:
    agent: str
    model: str
    dataset: str
    jobs: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # error class -> jobs
    scores: list[float] = field(default_factory=list)
    unscored: int = 0  # finished jobs whose report is missing or of an unknown format
    durations: list[float] = field(default_factory=list)  # seconds
    cost_usd: float = 0.0

    def to_json(self) -> dict:
        return {
            "agent": self.agent,
            "model": self.model,
            "dataset": self.dataset,
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "failed": dict(sorted(self.failed.items())),
            "scored": len(self.scores),
            "unscored": self.unscored,
            "score_mean": _round(statistics.fmean(self.scores)) if self.scores else None,
            "score_median": _round(statistics.median(self.scores)) if self.scores else None,
            "duration_median_s": _round(statistics.median(self.durations)) if self.durations else None,
            "duration_p90_s": _round(_percentile(self.durations, 0.9)) if self.durations else None,
            "cost_usd": _round(self.cost_usd),
        }


@dataclass(frozen=True)
class TaskDiff:
    agent: str
    model: str
    task_id: str
    before: str  # state in the first run (or "absent")
    after: str
    score_before: float | None
    score_after: float | None

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Report:
    run_ids: tuple[str, ...]
    groups: tuple[Group, ...]
    diffs: tuple[TaskDiff, ...]  # only when comparing two runs
    notes: tuple[str, ...]  # unknown report formats, unreadable reports
    costs: tuple[CostSeries, ...] = ()  # one per run, in run order
    by_run: dict[str, tuple[Group, ...]] = field(default_factory=dict)  # run -> its own groups, comparing two

    def side_by_side(self) -> list[tuple[tuple[str, str, str], dict[str, Group | None]]]:
        """Per agent x model x dataset, each compared run's group (None where it had no such jobs)."""
        keys = sorted({(g.agent, g.model, g.dataset) for groups in self.by_run.values() for g in groups})
        found = {run: {(g.agent, g.model, g.dataset): g for g in groups} for run, groups in self.by_run.items()}
        return [(key, {run: found[run].get(key) for run in self.by_run}) for key in keys]

    def to_json(self) -> dict:
        side = [
            {
                "agent": key[0],
                "model": key[1],
                "dataset": key[2],
                "runs": {run: g.to_json() if g else None for run, g in runs.items()},
            }
            for key, runs in self.side_by_side()
        ]
        return {
            "runs": list(self.run_ids),
            "groups": [g.to_json() for g in self.groups],
            **({"side_by_side": side} if self.by_run else {}),
            "differences": [d.to_json() for d in self.diffs],
            "notes": list(self.notes),
            "cost_over_time": [c.to_json() for c in self.costs],
        }


def build_report(ledger: Ledger, run_ids: Iterable[str], read: ReportReader) -> Report:
    run_ids = tuple(run_ids)
    twice = next((run_id for i, run_id in enumerate(run_ids) if run_id in run_ids[:i]), None)
    if twice is not None:
        raise UserError(f"run {twice} is given twice", "name each run once; two different runs are compared")
    notes: list[str] = []
    scores: dict[str, Score] = {}
    groups: dict[tuple[str, str, str], Group] = {}
    per_run_groups: dict[str, dict[tuple[str, str, str], Group]] = defaultdict(dict)
    per_run: dict[str, dict[tuple[str, str, str], Job]] = defaultdict(dict)
    costs = []
    for run_id in run_ids:
        ledger.get_run(run_id)
        jobs = ledger.jobs(run_id=run_id)
        costs.append(cost_over_time(ledger, run_id, jobs))
        for job in jobs:
            per_run[run_id][(job.agent, job.model, job.task_id)] = job
            key = (job.agent, job.model, job.dataset)
            if job.state.is_final:
                scores[job.id] = _score(job, read, notes)
            for into in (groups, per_run_groups[run_id]):
                _count(into.setdefault(key, Group(*key)), job, scores.get(job.id))
    diffs = _differences(per_run[run_ids[0]], per_run[run_ids[1]], scores) if len(run_ids) == 2 else ()
    by_run = {run_id: _ordered(per_run_groups[run_id]) for run_id in run_ids} if len(run_ids) == 2 else {}
    return Report(run_ids, _ordered(groups), diffs, tuple(notes), tuple(costs), by_run)


def _ordered(groups: dict[tuple[str, str, str], Group]) -> tuple[Group, ...]:
    return tuple(sorted(groups.values(), key=lambda g: (g.agent, g.model, g.dataset)))


def _count(group: Group, job: Job, score: Score | None) -> None:
    group.jobs += 1
    group.cost_usd += job.cost_usd
    if job.started_at and job.ended_at:
        group.durations.append((job.ended_at - job.started_at).total_seconds())
    if job.state == JobState.SUCCEEDED:
        group.succeeded += 1
    elif job.state.is_final:
        label = job.error_class or "unclassified"
        group.failed[label] = group.failed.get(label, 0) + 1
    if score is None:
        return  # not finished
    if score.known and score.value is not None:
        group.scores.append(score.value)
    else:
        group.unscored += 1


def _score(job: Job, read: ReportReader, notes: list[str]) -> Score:
    reports = [a for a in job.artifacts if a.endswith("grading_report.json.gz")]
    if not reports:
        return Score(None, None)
    try:
        score = score_of(read(reports[0]))
    except (OSError, ValueError) as exc:
        notes.append(f"{job.id}: cannot read {reports[0]} ({exc})")
        return Score(None, None)
    if not score.known:
        notes.append(f"{job.id}: grading report of an unknown format (no score, accuracy, passed or resolved field)")
    return score


def _differences(a: dict, b: dict, scores: dict[str, Score]) -> tuple[TaskDiff, ...]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        before, after = a.get(key), b.get(key)
        state_a = str(before.state) if before else "absent"
        state_b = str(after.state) if after else "absent"
        score_a = scores[before.id].value if before and before.id in scores else None
        score_b = scores[after.id].value if after and after.id in scores else None
        if (state_a, score_a) != (state_b, score_b):
            diffs.append(TaskDiff(key[0], key[1], key[2], state_a, state_b, score_a, score_b))
    return tuple(diffs)


def read_grading_report(location: str, s3_client_for: Callable[[], object] | None = None) -> object:
    """A grading report (.json.gz) from a local path or an s3:// URL."""
    if location.startswith("s3://"):
        from fceval_tui.domain.artifacts import split_s3

        if s3_client_for is None:
            raise OSError("no S3 client to read it with")
        from fceval_tui.backends.aws import AWS_ERRORS

        bucket, key = split_s3(location)
        try:
            data = s3_client_for().get_object(Bucket=bucket, Key=key)["Body"].read()
        except AWS_ERRORS as exc:
            raise OSError(str(exc)) from exc
    else:
        with open(location, "rb") as fh:
            data = fh.read()
    return json.loads(gzip.decompress(data))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def _round(value: float) -> float:
    return round(value, 4)
