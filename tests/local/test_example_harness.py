"""The bundled example harness behaves like an agent: slow enough to watch, and one task asks for input."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.cli import HARNESS


def _agent(tmp_path, task_id, *extra, **popen):
    argv = [sys.executable, str(HARNESS), "agent", "--agent", "dummy", "--task-id", task_id, "--out", str(tmp_path)]
    # Bytes, decoded by the tests: text mode would turn each \r into a line end.
    return subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, **popen)


def test_an_agent_works_for_about_a_minute_unless_told_otherwise(tmp_path):
    proc = _agent(tmp_path, "t", stdin=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline().decode()
    finally:
        proc.kill()
        proc.wait()
    assert "12 steps, about 60 s" in first


def test_an_agent_streams_steps_with_a_progress_bar_and_colours(tmp_path):
    proc = _agent(tmp_path, "t", "--seconds", "0.3", stdin=subprocess.DEVNULL)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0
    assert "\r\x1b[K" in out and "[##########..........]  50%" in out  # one line, rewritten
    assert "\x1b[32m✓\x1b[0m step 12/12" in out
    assert json.loads((tmp_path / "result.json").read_text())["task_id"] == "t"


def test_an_ask_task_takes_the_operators_answer_from_stdin(tmp_path):
    proc = _agent(tmp_path, "ask-the-operator", "--seconds", "0.3", stdin=subprocess.PIPE)
    out = proc.communicate(b"f1\n", timeout=30)[0].decode()
    assert proc.returncode == 0
    assert "which metric should I optimise?" in out and "the operator says: f1" in out
    assert json.loads((tmp_path / "result.json").read_text())["metric"] == "f1"


def test_an_ask_task_nobody_answers_goes_on_after_its_timeout(tmp_path):
    proc = _agent(tmp_path, "ask-the-operator", "--seconds", "0.3", stdin=subprocess.PIPE)
    out = proc.stdout.read().decode()  # stdin stays open and silent, as in a pane nobody types into
    proc.wait(timeout=30)
    proc.stdin.close()
    assert proc.returncode == 0
    assert "no answer after 0 s: going on with 'accuracy'" in out
    assert json.loads((tmp_path / "result.json").read_text())["metric"] == "accuracy"
