"""Theme files: TOML in the shipped `themes/` directory and in the user's config `themes/` folder.

A file that does not parse or validate is reported once (the caller shows it) and skipped; the
console then falls back to the built-in default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from fceval_tui import locations
from fceval_tui.package_data import themes_dir

DEFAULT_THEME = "fceval-dark"
COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
)


@dataclass(frozen=True)
class ThemeProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"theme file {self.path}: {self.reason}"


def parse_theme(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid TOML ({exc})") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("missing 'name' (a non-empty string)")
    if "primary" not in data:
        raise ValueError("missing 'primary' colour")
    unknown = set(data) - {"name", "dark", *COLOR_KEYS}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (allowed: name, dark, {', '.join(COLOR_KEYS)})")
    colors = {}
    for key in COLOR_KEYS:
        if key in data:
            try:
                Color.parse(str(data[key]))
            except ColorParseError:
                raise ValueError(f"{key} = {data[key]!r} is not a colour (use #rrggbb)") from None
            colors[key] = str(data[key])
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError("'dark' must be true or false")
    return Theme(name=name.strip(), dark=dark, **colors)


def load_themes(extra_dirs: tuple[Path, ...] = ()) -> tuple[list[Theme], list[ThemeProblem]]:
    themes: list[Theme] = []
    problems: list[ThemeProblem] = []
    for folder in (themes_dir(), locations.user_themes_dir(), *extra_dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                themes.append(parse_theme(path))
            except (ValueError, OSError) as exc:
                problems.append(ThemeProblem(path, str(exc)))
    return themes, problems
