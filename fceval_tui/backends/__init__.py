"""Backends: how a job's compute is provisioned, started, observed and destroyed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import ConfigError

if TYPE_CHECKING:
    from fceval_tui.backends.base import Backend
    from fceval_tui.config import Settings


def backend_class(name: str) -> type[Backend]:
    """The class of a backend named in BACKENDS: `<Name>Backend` in module fceval_tui.backends.<name>.

    Imported on first use, so that the local backend never loads boto3."""
    import importlib

    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}", "expected one of " + ", ".join(BACKENDS))
    return getattr(importlib.import_module(f"{__name__}.{name}"), f"{name.capitalize()}Backend")


def make_backend(name: str, settings: Settings) -> Backend:
    """The backend of that name; EC2 jobs with a pool set (FCEVAL_POOL, `launch --pool`) run on the pool."""
    if name == "ec2" and settings.pool:
        from fceval_tui.backends.ec2_pool import Ec2PoolBackend

        return Ec2PoolBackend(settings)
    return backend_class(name)(settings)
