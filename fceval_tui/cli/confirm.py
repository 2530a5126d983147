"""Interactive confirmation before anything destructive; scripts say --yes instead."""

from __future__ import annotations

import sys

from fceval_tui.errors import UserError


def require_terminal(problem: str, fix: str) -> None:
    """Refuse at once (exit 2) when nobody is at the terminal to answer."""
    if not sys.stdin.isatty():
        raise UserError(problem, fix)


def typed(prompt: str, wanted: str) -> bool:
    """True only when the user types `wanted`; end of input is a no."""
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip() == wanted
