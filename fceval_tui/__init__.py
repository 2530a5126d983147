"""fceval-tui: operator console for AI-agent evaluation runs (local tmux or AWS)."""

__version__ = "0.1.0"
