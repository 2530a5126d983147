"""The app's paths come from one module and land where they always did."""

import sys

import pytest

from fceval_tui import locations
from fceval_tui.backends.base import work_dir
from fceval_tui.config import load_settings
from fceval_tui.domain.models import JobSpec
from fceval_tui.errors import StateDirError
from fceval_tui.ledger import Ledger


@pytest.mark.skipif(sys.platform != "linux", reason="XDG directories are what platformdirs uses on Linux")
def test_user_dirs_follow_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    assert locations.default_state_dir() == tmp_path / "state-home" / "fceval-tui"
    assert load_settings(environ={}).state_dir == tmp_path / "state-home" / "fceval-tui"
    assert locations.user_themes_dir() == tmp_path / "config-home" / "fceval-tui" / "themes"
    assert locations.keymap_path() == tmp_path / "config-home" / "fceval-tui" / "keymap.toml"


def test_state_dir_layout(state_dir):
    ledger = Ledger.open(state_dir)
    run, (job,) = ledger.create_run("local", 1, [JobSpec("aide", "t1")])
    ledger.close()
    assert (state_dir / "ledger.sqlite3").is_file()
    settings = load_settings(environ={}, state_dir=state_dir)
    assert work_dir(settings, job) == state_dir / "work" / run.id / job.id
    assert locations.runner_log(state_dir, run.id) == state_dir / "logs" / f"runner-{run.id}.log"
    assert settings.artifact_prefix == str(state_dir / "artifacts")
    assert locations.tmux_conf(state_dir) == state_dir / "tmux.conf"


def test_tmux_socket_is_one_per_state_dir(tmp_path):
    first = locations.tmux_socket_name(tmp_path / "a")
    assert first == locations.tmux_socket_name(tmp_path / "x" / ".." / "a")
    assert first != locations.tmux_socket_name(tmp_path / "b")
    assert first.startswith("fceval-") and len(first) == len("fceval-") + 10


def test_unwritable_state_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirError, match="not writable .*fix: pass --state-dir DIR"):
        locations.ensure_state_dir(blocker / "state")
    assert locations.ensure_state_dir(tmp_path / "new" / "state").is_dir()
