"""An IAM policy document: its statements, their JSON, and the request context each is written for
(the simulator and the offline evaluator need a concrete resource and context keys to match)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# What the audit sends as the caller's user id when a resource names ${aws:userid} (sessions).
PROBE_USERID = "AIDAPERMISSIONPROBE"


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping | None = None

    def to_json(self) -> dict:
        doc: dict = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions) if len(self.actions) > 1 else self.actions[0],
            "Resource": list(self.resources) if len(self.resources) > 1 else self.resources[0],
        }
        if self.condition:
            doc["Condition"] = {op: dict(entries) for op, entries in self.condition.items()}
        return doc

    def context(self) -> dict[str, str]:
        """The request context this statement is written for (e.g. iam:PassedToService, a resource's tag)."""
        context = {
            key: sample_resource(_listify(value)[0])
            for operator in (self.condition or {}).values()
            for key, value in operator.items()
        }
        if any("${aws:userid}" in r for r in self.resources):
            context["aws:userid"] = PROBE_USERID
        return context

    def context_entries(self) -> list[dict]:
        """The same context for the policy simulator, so a conditional Allow can match."""
        return [
            {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for key, value in self.context().items()
        ]


def sample_resource(pattern: str) -> str:
    """A concrete ARN for a pattern (the simulator and the evaluator need one resource, not a glob)."""
    if not pattern.startswith("arn:"):
        return pattern
    parts = pattern.replace("${aws:userid}", PROBE_USERID).split(":", 5)
    if len(parts) == 6 and parts[4] == "*":
        parts[4] = "000000000000"
    return ":".join(parts).replace("*", "permission-probe")


def document(statements: Iterable[Statement]) -> dict:
    return {"Version": "2012-10-17", "Statement": [s.to_json() for s in statements]}


def render(statements: Iterable[Statement]) -> str:
    return json.dumps(document(statements), indent=2)


def only_missing(statements: Iterable[Statement], missing: Mapping[str, Iterable[str]]) -> list[Statement]:
    """The statements cut down to what is missing ({sid: actions}), for a fix snippet."""
    out = []
    for s in statements:
        wanted = [a for a in s.actions if a in set(missing.get(s.sid, ()))]
        if wanted:
            out.append(Statement(s.sid, tuple(wanted), s.resources, s.condition))
    return out


def _listify(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str | dict) else list(value)
