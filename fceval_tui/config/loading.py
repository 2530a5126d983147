"""Loading the settings: command line > environment > .env > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fceval_tui import locations
from fceval_tui.config.settings import SETTINGS, Settings, is_known_env
from fceval_tui.errors import ConfigError


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file strictly: a line python-dotenv cannot parse is an error, not a warning."""
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8", "save the .env file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "check the path given to --env-file") from None
    import io

    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            snippet = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            raise ConfigError(
                f"{path}:{line}: cannot parse {snippet!r}",
                "write KEY=value, quote values that contain spaces or '#'",
            )
        if binding.key is not None:
            values[binding.key] = binding.value or ""
    return values


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    explicit_env_file: bool = False,
) -> Settings:
    """Resolve every setting. `cli` holds already-typed values keyed by attr (None = not given)."""
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    file_values: dict[str, str] = {}
    if env_file is not None:
        if env_file.is_file():
            file_values = read_env_file(env_file)
        elif explicit_env_file:
            raise ConfigError(f"--env-file {env_file}: file not found", "give the path of an existing .env file")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.attr in cli:
            raw, source = cli[s.attr], "command line"
            values[s.attr] = s.parse(s.env, raw) if isinstance(raw, str) else raw
        elif s.env in environ:
            source = "environment"
            values[s.attr] = s.parse(s.env, environ[s.env])
        elif s.env in file_values:
            source = str(env_file)
            values[s.attr] = s.parse(s.env, file_values[s.env])
        else:
            source = "default"
            values[s.attr] = s.default_value()
        sources[s.attr] = source
    unknown = sorted(
        k for k in file_values if k.startswith("FCEVAL_") and not is_known_env(k) and k != "FCEVAL_STATE_DIR"
    )
    if unknown:
        raise ConfigError(f"{env_file}: unknown variable {unknown[0]}", "check the spelling against .env.template")
    if state_dir is None:
        raw_dir = environ.get("FCEVAL_STATE_DIR") or file_values.get("FCEVAL_STATE_DIR")
        state_dir = Path(raw_dir) if raw_dir else locations.default_state_dir()
    return Settings(**values, state_dir=state_dir.expanduser(), env_file=env_file, sources=sources)
