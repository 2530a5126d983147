"""The code base stays as ruff wants it (lint and format), like any other check in CI."""

import shutil
import subprocess

import pytest

from tests.helpers.cli import REPO


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args):
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extras: pip install -e '.[test]'"
    proc = subprocess.run(
        [ruff, *args, "fceval_tui", "tests", "bench", "examples"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
