"""A small evaluator of IAM identity policies, offline.

It answers "would these identity policies allow action A on resource R, given these condition
keys?" for the audit's fallback when iam:SimulatePrincipalPolicy fails, and for the tests. It does
what can be done offline: explicit Deny wins, an Allow whose condition it cannot decide is
reported as conditional, policy variables (${aws:userid}) take the context's value, and
permission boundaries, SCPs and resource policies are out of its sight (the findings say so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum


class Decision(StrEnum):
    ALLOWED = "allowed"
    DENIED = "explicitly denied"
    CONDITIONAL = "allowed only under conditions"
    IMPLICIT = "not allowed"


def _glob(pattern: str, case: bool) -> re.Pattern:
    # IAM wildcards are only * and ?; every other character is literal (unlike fnmatch's [..]).
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, 0 if case else re.IGNORECASE)


def _listify(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str | dict) else list(value)


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substitute(pattern: str, context: Mapping[str, str]) -> str:
    """Policy variables (${aws:userid}) take the context's value; unknown ones match nothing."""
    return _VARIABLE.sub(lambda m: context.get(m.group(1).lower(), "\0"), pattern)


def _matches(statement: Mapping, key: str, value: str, case: bool, context: Mapping[str, str]) -> bool:
    if key in statement:
        return any(_glob(_substitute(p, context), case).fullmatch(value) for p in _listify(statement[key]))
    negated = "Not" + key
    if negated in statement:
        return not any(_glob(_substitute(p, context), case).fullmatch(value) for p in _listify(statement[negated]))
    return False


def parse_document(doc) -> dict:
    """boto3 decodes IAM documents to dicts; a raw (URL-encoded) JSON string is accepted too."""
    if isinstance(doc, str):
        from urllib.parse import unquote

        return json.loads(unquote(doc))
    return dict(doc or {})


def _like(value: str, wanted: list) -> bool:
    return any(_glob(w, True).fullmatch(value) for w in wanted)


# Condition operators the evaluator can decide when it is given the key's value.
_OPERATORS = {
    "StringEquals": lambda value, wanted: value in wanted,
    "StringLike": _like,
    "ArnEquals": _like,  # IAM lets both ARN operators use wildcards
    "ArnLike": _like,
}


def _condition_holds(condition: Mapping, context: Mapping[str, str]) -> bool | None:
    """True/False when every operator and key is known from `context`; None when it cannot tell."""
    for operator, entries in condition.items():
        test = _OPERATORS.get(operator)
        if test is None:
            return None
        for key, wanted in entries.items():
            if key.lower() not in context:
                return None
            if not test(context[key.lower()], _listify(wanted)):
                return False
    return True


def evaluate(documents: Iterable, action: str, resource: str, context: Mapping[str, str] | None = None) -> Decision:
    """What identity policies say about `action` on `resource`; `context` gives condition keys' values
    (condition keys are case-insensitive, as in IAM)."""
    context = {key.lower(): value for key, value in (context or {}).items()}
    allowed = conditional_allow = conditional_deny = False
    for doc in documents:
        for statement in _listify(parse_document(doc).get("Statement")):
            if not (
                _matches(statement, "Action", action, False, context)
                and _matches(statement, "Resource", resource, True, context)
            ):
                continue
            holds = _condition_holds(statement["Condition"], context) if statement.get("Condition") else True
            if holds is False:
                continue
            if statement.get("Effect") == "Deny":
                if holds:
                    return Decision.DENIED
                conditional_deny = True
            elif statement.get("Effect") == "Allow":
                conditional_allow |= holds is None
                allowed |= bool(holds)
    if allowed:
        return Decision.CONDITIONAL if conditional_deny else Decision.ALLOWED
    return Decision.CONDITIONAL if conditional_allow else Decision.IMPLICIT


def trusts_service(trust_document, service: str) -> bool:
    """Whether a role's trust policy lets `service` assume it."""
    for statement in _listify(parse_document(trust_document).get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        if not any(_glob(p, False).fullmatch("sts:AssumeRole") for p in _listify(statement.get("Action"))):
            continue
        principal = statement.get("Principal") or {}
        services = _listify(principal.get("Service")) if isinstance(principal, dict) else []
        if service in services:
            return True
    return False
