"""Data shipped with the package: themes and the example harness.

In a wheel they live inside the package (`fceval_tui/themes`, `fceval_tui/examples`); in an
editable checkout they are the top-level directories of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ is missing from this installation of fceval-tui; reinstall the package")


def example_harness() -> Path:
    try:
        return shipped_dir("examples") / "harness.py"
    except FileNotFoundError:
        return _PACKAGE / "examples" / "harness.py"


def example_jobs() -> Path:
    return shipped_dir("examples") / "jobs.csv"


def themes_dir() -> Path:
    return shipped_dir("themes")
