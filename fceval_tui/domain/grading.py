"""Reading a score out of a harness's grading report, by the harness's own fields.

Only formats recognised here give a score; anything else says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

# field -> how its value becomes a score in [0, 1] (or the harness's own scale for numeric scores)
_NUMERIC = ("score", "accuracy", "reward")
_BOOLEAN = ("passed", "resolved", "is_resolved", "success")


@dataclass(frozen=True)
class Score:
    value: float | None
    field: str | None  # which field it came from; None when the format is unknown

    @property
    def known(self) -> bool:
        return self.field is not None


def score_of(report: object) -> Score:
    """The score a grading report gives, e.g. {"score": 0.7} or {"is_resolved": true}."""
    if not isinstance(report, dict):
        return Score(None, None)
    for name in _NUMERIC:
        value = report.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Score(float(value), name)
    for name in _BOOLEAN:
        value = report.get(name)
        if isinstance(value, bool):
            return Score(1.0 if value else 0.0, name)
    return Score(None, None)
