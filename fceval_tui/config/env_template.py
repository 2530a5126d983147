"""`.env.template`, generated from the settings fields so the two cannot drift
(`python -m fceval_tui.config.env_template > .env.template`)."""

from __future__ import annotations

import sys

from fceval_tui.config.settings import SETTINGS

_GROUP_TITLES = {
    "general": "General",
    "aws": "AWS (FC-Eval's names, kept as they are)",
    "ecs": "ECS Fargate backend",
    "batch": "AWS Batch backend",
}


def render_env_template() -> str:
    """The text of `.env.template`, generated from the settings fields so the two cannot drift."""
    lines = [
        "# fceval-tui settings: copy to .env and uncomment what you change.",
        "# Precedence: command line > environment > .env > defaults. Generated from fceval_tui/config/settings.py.",
        "",
        "# Ledger, logs and job work files. Default: the platform's user state dir.",
        "# FCEVAL_STATE_DIR=/data/fceval-state",
    ]
    for group, title in _GROUP_TITLES.items():
        lines += ["", f"# --- {title} ---"]
        for s in (s for s in SETTINGS if s.group == group):
            example = s.example
            if any(ch in example for ch in " {}#'\"$"):
                example = "'" + example + "'"
            lines.append(f"# {s.doc} Default: {s.shown_default() or '(empty)'}.")
            lines.append(f"# {s.env}={example}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_env_template())
