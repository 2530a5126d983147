"""What a preflight check is, what it reports, and the context the checks share.

A check is a function of the context returning findings. Findings carry a severity, what was
found (summary + detail) and the exact fix. "ok" needs evidence; a check that cannot look says
"unknown" and why. Checks run concurrently, so anything several of them need (the caller's
identity, the instance role) is computed once through `AuditContext.once`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from fceval_tui.config import Settings


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        # Worst first when summarising: an error outweighs an unknown, which outweighs a warning.
        return {"error": 4, "unknown": 3, "warning": 2, "info": 1, "ok": 0}[self.value]


@dataclass(frozen=True)
class Finding:
    id: str
    area: str
    severity: Severity
    summary: str
    detail: str = ""
    fix: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


class Findings:
    """Builder used inside a check: `f.ok(...)`, `f.error(...)` with the check's area."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.items: list[Finding] = []

    def add(self, severity: Severity, id: str, summary: str, detail: str = "", fix: str = "") -> Finding:
        finding = Finding(id, self.area, severity, summary, detail, fix)
        self.items.append(finding)
        return finding

    def ok(self, id: str, summary: str, detail: str = "") -> Finding:
        return self.add(Severity.OK, id, summary, detail)

    def info(self, id: str, summary: str, detail: str = "", fix: str = "") -> Finding:
        return self.add(Severity.INFO, id, summary, detail, fix)

    def warning(self, id: str, summary: str, detail: str = "", fix: str = "") -> Finding:
        return self.add(Severity.WARNING, id, summary, detail, fix)

    def error(self, id: str, summary: str, detail: str = "", fix: str = "") -> Finding:
        return self.add(Severity.ERROR, id, summary, detail, fix)

    def unknown(self, id: str, summary: str, detail: str = "", fix: str = "") -> Finding:
        return self.add(Severity.UNKNOWN, id, summary, detail, fix)


@dataclass(frozen=True)
class Check:
    id: str  # also the id of the "unknown" finding when the check itself cannot run
    area: str
    title: str
    run: Callable[[AuditContext, Findings], None]


@dataclass
class AuditContext:
    """Settings, the backend under audit, and AWS clients built up front (clients are thread-safe)."""

    settings: Settings
    backend: str
    clients: dict[str, Any] = field(default_factory=dict)
    # IAM client used for iam:SimulatePrincipalPolicy; the shared IAM client unless given.
    simulator: Any = None
    # A read-only console's audit only looks: checks skip their write probes and say so.
    read_only: bool = False
    _memo: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        return self.clients[service]

    @property
    def iam_simulator(self) -> Any:
        return self.simulator or self.clients["iam"]

    @property
    def backend_class(self):
        from fceval_tui.backends import backend_class

        return backend_class(self.backend)

    def once(self, key: Any, compute: Callable[[], Any]) -> Any:
        """compute() once per key, whichever check asks first; the others wait for its result (or error)."""
        with self._lock:
            future = self._memo.get(key)
            owner = future is None
            if owner:
                future = self._memo[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:  # handed to every caller through the future, not lost
                future.set_exception(exc)
        return future.result()
