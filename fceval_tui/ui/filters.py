"""The `/` filter language of the jobs view: `state:failed agent:aide flaky` (all terms must match).

`key:value` matches a field (state, agent, task, model, run, backend, id, error) by substring, case-
insensitive; `key:a,b` matches either; a bare word matches any of those fields; a leading `!`
negates a term.
"""

from __future__ import annotations

from dataclasses import dataclass

from fceval_tui.domain.models import Job

FIELDS = {
    "state": lambda j: j.state.value,
    "agent": lambda j: j.agent,
    "task": lambda j: j.task_id,
    "model": lambda j: j.model,
    "run": lambda j: j.run_id,
    "backend": lambda j: j.backend,
    "id": lambda j: j.id,
    "error": lambda j: j.error_class or "",  # domain.triage.ErrorClass: capacity, harness_exit, ...
}


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    field: str | None
    values: tuple[str, ...]
    negate: bool

    def matches(self, job: Job) -> bool:
        fields = [FIELDS[self.field]] if self.field else list(FIELDS.values())
        hit = any(v in get(job).lower() for get in fields for v in self.values)
        return hit != self.negate


@dataclass(frozen=True)
class JobFilter:
    terms: tuple[Term, ...] = ()
    text: str = ""

    def __call__(self, job: Job) -> bool:
        return all(term.matches(job) for term in self.terms)

    @property
    def active(self) -> bool:
        return bool(self.terms)


def parse(text: str) -> JobFilter:
    terms = []
    for word in text.split():
        negate = word.startswith("!")
        word = word.lstrip("!")
        key, sep, value = word.partition(":")
        if sep:
            if key not in FIELDS:
                raise FilterError(f"unknown filter field {key!r}; use one of {', '.join(FIELDS)}")
            values = tuple(v.lower() for v in value.split(",") if v)
            if not values:
                raise FilterError(f"{key}: needs a value, e.g. {key}:x")
            terms.append(Term(key, values, negate))
        elif word:
            terms.append(Term(None, (word.lower(),), negate))
    return JobFilter(tuple(terms), text.strip())
