"""Errors a user can cause or fix. The CLI prints them on one line and exits 2; the UI notifies."""

from __future__ import annotations


class UserError(Exception):
    """A problem with input or configuration, with the fix spelled out."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} (fix: {self.fix})" if self.fix else self.problem


class ConfigError(UserError):
    """A setting (command line, environment or .env) has a bad value."""


class JobFileError(UserError):
    """A job file cannot be read or has a bad line; the message names file:line."""


class NotFoundError(UserError):
    """A run, job or target named by the user does not exist."""


class StateDirError(UserError):
    """The state directory cannot be created or written."""


class BackendError(Exception):
    """Raised by a backend while driving a job. `transient` decides whether the runner retries;
    `error_class` (a domain.triage.ErrorClass value) is what the job shows if it ends on this error."""

    transient = False
    error_class = "setup"

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class TransientError(BackendError):
    """Worth retrying with backoff: capacity, throttling, a target not yet reachable."""

    transient = True
    error_class = "lost_session"


class ThrottlingError(TransientError):
    """AWS refused a call for its rate; botocore's own retries were used up."""

    error_class = "throttling"


class PermanentError(BackendError):
    """Retrying cannot help: bad image, missing role, unauthorized, missing tool."""


class CapacityError(TransientError):
    """No capacity or quota right now; the job waits in `waiting_capacity`."""

    error_class = "capacity"


class CredentialsExpired(BackendError):
    """AWS refused the console's credentials as expired, or they could not be refreshed (SSO token,
    MFA, credential process). Nothing is wrong with the job: the runner pauses it until calls work again."""

    transient = True


class CredentialsNotRenewed(PermanentError):
    """The credentials stayed expired past the compute's TTL: the compute has ended by itself."""

    error_class = "timeout"
