"""Parsers of setting values: each takes (variable name, raw text) and returns the typed value, or
raises ConfigError naming the variable, the value and the expected form."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fceval_tui.domain.template import CommandTemplate
from fceval_tui.errors import ConfigError

Parser = Callable[[str, str], Any]


def int_range(minimum: int, maximum: int | None = None) -> Parser:
    def parse(name: str, raw: str) -> int:
        form = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer", f"expected {form}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(f"{name}={raw!r} is out of range", f"expected {form}")
        return value

    return parse


def positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number", "expected a positive number, e.g. 30") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be positive", "expected a positive number, e.g. 30")
    return value


def optional(parser: Parser) -> Parser:
    return lambda name, raw: parser(name, raw) if raw.strip() else None


def any_text(name: str, raw: str) -> str:
    return raw


def boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean", "expected true or false")


def choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name}={raw!r} is not a known value", "expected one of " + ", ".join(choices))
        return raw

    return parse


def pattern(regex: str, form: str) -> Parser:
    compiled = re.compile(regex)

    def parse(name: str, raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ConfigError(f"{name}={raw!r} is malformed", f"expected {form}")
        return raw

    return parse


_BUCKET_NAME = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket(name: str, raw: str) -> str:
    if not _BUCKET_NAME.fullmatch(raw) or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", raw):
        raise ConfigError(
            f"{name}={raw!r} is not a valid S3 bucket name",
            "expected 3-63 lowercase letters, digits, dots or hyphens, e.g. my-fceval-staging",
        )
    return raw


def local_or_s3_prefix(name: str, raw: str) -> str:
    if raw.startswith("s3://"):
        bucket(name, raw[5:].split("/", 1)[0])
        return raw.rstrip("/")
    if "://" in raw:
        raise ConfigError(
            f"{name}={raw!r} has an unsupported scheme", "expected a local directory or s3://bucket/prefix"
        )
    return str(Path(raw).expanduser())


def comma_list(item: Parser | None = None) -> Parser:
    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(item(name, part) for part in items) if item else items

    return parse


def command_template(name: str, raw: str) -> CommandTemplate:
    return CommandTemplate(name, raw)


def command_prefix(name: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} cannot be split into words ({exc})", "balance the quotes") from None


AVAILABILITY_ZONE = pattern(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", "an availability zone such as us-east-1a")


def aws_id(prefix: str) -> Parser:
    return pattern(prefix + r"-[0-9a-f]{8,17}", f"an id like {prefix}-0123456789abcdef0")
