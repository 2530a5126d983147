"""Backends: how a job's compute is provisioned, started, observed and destroyed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fceval_tui.errors import ConfigError

if TYPE_CHECKING:
    from fceval_tui.backends.base import Backend
    from fceval_tui.config import Settings

# Imported lazily so that the local backend never loads boto3.
_REGISTRY = {
    "local": ("fceval_tui.backends.local", "LocalBackend"),
    "ec2": ("fceval_tui.backends.ec2", "Ec2Backend"),
    "ecs": ("fceval_tui.backends.ecs", "EcsBackend"),
    "batch": ("fceval_tui.backends.batch", "BatchBackend"),
}


def backend_class(name: str) -> type[Backend]:
    import importlib

    try:
        module, cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}", "expected one of " + ", ".join(_REGISTRY)) from None
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, settings: Settings) -> Backend:
    return backend_class(name)(settings)
