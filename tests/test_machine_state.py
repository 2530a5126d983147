"""tests/helpers/machine_state.py: machine-wide test state (accounts, groups) is removed by the last test
process that holds it, only if the tests made it, and never while another process (an xdist worker, another
checkout's run) still holds it."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import machine_state


@pytest.fixture
def resource(tmp_path, monkeypatch):
    monkeypatch.setattr(machine_state, "ROOT", tmp_path / "state")
    path = tmp_path / "account"
    return path, {"exists": path.exists, "remove": path.unlink, "create": path.touch}


def test_the_last_holder_removes_what_the_tests_made(resource):
    path, calls = resource
    with machine_state.held("acct", **calls):
        assert path.exists()
    assert not path.exists()


def test_nothing_is_removed_while_another_process_holds_it(resource):
    path, calls = resource
    other = subprocess.Popen(["sleep", "60"])
    try:
        with machine_state.held("acct", **calls):
            (machine_state.ROOT / "acct.holders" / str(other.pid)).touch()  # another process arrives
        assert path.exists()
    finally:
        other.kill()
        other.wait()
    with machine_state.held("acct", **calls):  # the dead holder is dropped; the account is left as found
        pass
    assert path.exists()


def test_what_was_there_before_stays(resource):
    path, calls = resource
    path.touch()
    with machine_state.held("acct", **calls):
        pass
    assert path.exists()
