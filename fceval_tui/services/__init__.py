"""Orchestration with no Textual: runner, mirror, audit, teardown, cost."""
