"""Mirror input (keys, blocking send, paste), screen, end of pane, `tail` and `attach_argv`."""

from __future__ import annotations

import io
import pathlib
import threading
import time
import uuid

import pytest

from fceval_tui.errors import NotFoundError
from fceval_tui.services.mirror import Mirror, PaneGone
from fceval_tui.services.mirror.tail import attach_argv, tail
from fceval_tui.transports.ecs_exec import EcsExecTransport
from fceval_tui.transports.local import LocalTransport
from fceval_tui.transports.ssm import SsmTransport
from tests.helpers import tmux as tmux_fixtures
from tests.helpers.tmux import SYNC_TIMEOUT, clean_env


def _shell_pane(server, tmp_path) -> str:
    name = "sh" + uuid.uuid4().hex[:8]
    server.tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", "env", "PS1=$ ", "sh")
    return name


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + SYNC_TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["stream", "poll"])
@pytest.mark.parametrize(("from_start", "expected"), [(False, ["new"]), (True, ["old 1", "old 2", "new"])])
def test_existing_output_is_skipped_unless_from_start(tmux_server, mode, from_start, expected):
    pane = tmux_server.new_driven_pane()
    try:
        pane.emit(b"old 1\nold 2\n")
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode=mode, from_start=from_start)
        with mirror:  # start() returns once attached: what follows is new
            pane.emit(b"new\n")
            got: list[str] = []
            while len(got) < len(expected):
                got += mirror.poll(timeout=1).lines
        assert got == expected
    finally:
        pane.kill()


@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_clear_and_progress_bars_on_a_real_pane(tmux_server, mode):
    pane = tmux_server.new_driven_pane()
    try:
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode=mode, poll_interval=0)
        got: list[str] = []
        exact = []
        with mirror:
            for chunk in (b"a\nb\n", b"\x1b[H\x1b[2J\x1b[3Jc\n", b"get 5%\rget 70%\rget 100%\n", b"tail without LF"):
                pane.emit(chunk)
                update = mirror.poll(timeout=2)
                got += update.lines
                exact.append(update.gap_exact)
            pane.finish()
            for update in mirror:
                got += update.lines
                exact.append(update.gap_exact)
        if mode == "stream":
            # Everything, the unfinished last line too (delivered when the pane ends).
            assert got == ["a", "b", "c", "get 100%", "tail without LF"]
            assert all(exact)
        else:
            # Polling cannot read a pane that is gone: the unfinished line is lost, and it says so.
            assert got == ["a", "b", "c", "get 100%"]
            assert exact == [True, False, True, True, False]  # the clear is noticed and reported too
    finally:
        pane.kill()


def test_screen_keeps_colours(tmux_server):
    pane = tmux_server.new_driven_pane()
    try:
        pane.emit(b"\x1b[31mred\x1b[0m plain\n")
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode="poll")
        screen = mirror.screen()
        assert len(screen) == tmux_fixtures.HEIGHT
        assert "\x1b[31mred" in screen[0] and "plain" in screen[0]
    finally:
        pane.kill()


def test_send_keys_and_blocking_send(tmux_server, tmp_path):
    session = _shell_pane(tmux_server, tmp_path)
    try:
        mirror = Mirror(tmux_server.transport(), tmux_server.args, session, mode="poll")
        marker = tmp_path / "done"
        mirror.run_and_wait(f"sleep 0.2; echo finished > {marker}", timeout=SYNC_TIMEOUT)
        assert marker.read_text() == "finished\n"  # returned only once the command had run
        with pytest.raises(TimeoutError):
            mirror.run_and_wait("sleep 30", timeout=0.3)
        mirror.send_keys("C-c")
        mirror.send_keys("echo typed > " + str(tmp_path / "typed"), "Enter")
        _wait_for(lambda: (tmp_path / "typed").exists(), "send-keys to run")
    finally:
        tmux_server.tmux("kill-session", "-t", session, check=False)


def test_blocking_send_notices_the_server_dying(tmp_path):
    server = tmux_fixtures.TmuxServer(f"fceval-test-{uuid.uuid4().hex[:10]}", tmp_path)
    session = _shell_pane(server, tmp_path)
    try:
        mirror = Mirror(server.transport(), server.args, session, mode="poll")
        # A wait-for waiter also returns 0 when the server dies: the mirror must not take that for success.
        with pytest.raises(PaneGone):
            mirror.run_and_wait(f"tmux -L {server.socket} kill-server", timeout=SYNC_TIMEOUT)
    finally:
        server.tmux("kill-server", check=False)


class _NarrowTransport(LocalTransport):
    """A local transport that carries at most SSM's 32 KB of stdin per command, and records its argvs."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.argvs: list[list[str]] = []

    @property
    def max_stdin_bytes(self) -> int | None:
        return 32_000

    def run(self, argv, *, stdin=None, timeout=60.0):
        self.argvs.append(list(argv))
        return super().run(argv, stdin=stdin, timeout=timeout)


def _paste_and_read(mirror, pane_file, text) -> str:
    mirror.paste(text)
    _wait_for(lambda: pane_file.exists() and pane_file.stat().st_size >= len(text.encode()), "the paste")
    return pane_file.read_text()


def _paste_session(tmux_server, out) -> str:
    session = "paste" + uuid.uuid4().hex[:8]
    tmux_server.tmux("new-session", "-d", "-s", session, "sh", "-c", f"stty -echo; cat > {out}")
    return session


def test_paste_large_text_locally_and_in_chunks_over_a_narrow_transport(tmux_server, tmp_path):
    text = "".join(f"pasted line {i} with 'quotes' and $dollars\n" for i in range(5000))  # ~210 kB
    for narrow in (False, True):
        out = tmp_path / f"pasted-{narrow}"
        session = _paste_session(tmux_server, out)
        transport = _NarrowTransport(env=clean_env()) if narrow else tmux_server.transport()
        mirror = Mirror(transport, tmux_server.args, session, mode="poll")
        assert _paste_and_read(mirror, out, text) == text  # byte for byte
        tmux_server.tmux("kill-session", "-t", session, check=False)
    appends = [argv for argv in transport.argvs if argv[:2] == ["sh", "-c"]]
    assert len(appends) == -(-len(text.encode()) // 32_000)


def test_pasted_text_never_appears_in_an_argv(tmux_server, tmp_path):
    secret = "do-not-show-" + uuid.uuid4().hex
    text = (secret + "\n") * 4000
    out = tmp_path / "pasted"
    session = _paste_session(tmux_server, out)
    transport = _NarrowTransport(env=clean_env())
    try:
        mirror = Mirror(transport, tmux_server.args, session, mode="poll")
        assert _paste_and_read(mirror, out, text) == text
        assert not [argv for argv in transport.argvs if any(secret in word for word in argv)]
        (removed,) = [argv for argv in transport.argvs if argv[:2] == ["rm", "-f"]]
        assert not pathlib.Path(removed[2]).exists()  # the temporary file is gone
    finally:
        tmux_server.tmux("kill-session", "-t", session, check=False)


def test_tail_prints_lines_once_in_order_and_exits_when_the_pane_exits(tmux_server):
    pane = tmux_server.new_driven_pane()
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    # The pane stays (dead) after its process exits, so output racing the start of tail is still
    # readable; tail must notice the death itself.
    tmux_server.tmux("set-option", "-t", pane.session, "remain-on-exit", "on")
    try:
        pane.emit(b"first\n")
        thread = threading.Thread(
            target=lambda: result.append(
                tail(tmux_server.transport(), tmux_server.args, pane.session, True, out, err=err)
            )
        )
        thread.start()
        pane.emit(b"second\n\x1b[1mthird\x1b[0m\nfourth, unfinished")
        pane.finish()
        thread.join(SYNC_TIMEOUT)
        assert not thread.is_alive()
        assert result == [0]
        assert out.getvalue() == "first\nsecond\nthird\nfourth, unfinished\n"
        assert err.getvalue() == ""
    finally:
        pane.kill()


def test_tail_of_a_missing_target_is_a_not_found_error(tmux_server):
    with pytest.raises(NotFoundError) as caught:
        tail(tmux_server.transport(), tmux_server.args, "no-such-job", False, io.StringIO())
    assert "no-such-job" in str(caught.value) and caught.value.fix
    with pytest.raises(NotFoundError):  # no server at all on that socket
        tail(None, ("-L", f"fceval-test-none-{uuid.uuid4().hex[:8]}"), "job", False, io.StringIO())


def test_attach_argv_locally_and_remotely():
    assert attach_argv(("-L", "fceval-x"), "job-1") == ["tmux", "-L", "fceval-x", "attach-session", "-t", "job-1"]
    assert attach_argv(("-S", "/tmp/s"), "job-1", read_only=True)[-1] == "-r"
    prefix = ("aws-vault", "exec", "prof", "--")
    ssm = attach_argv((), "job-1", SsmTransport(None, "i-0abc", command_prefix=prefix))
    assert ssm[:5] == [*prefix, "aws"] and "start-session" in ssm
    assert ssm[-1] == '{"command": ["tmux attach-session -t job-1"]}'
    ecs = attach_argv(("-L", "s"), "job 1", EcsExecTransport("c", "t", "n", command_prefix=prefix))
    assert ecs[:5] == [*prefix, "aws"] and ecs[-2:] == ["--command", "tmux -L s attach-session -t 'job 1'"]


def test_the_mirror_does_not_resize_the_window(tmux_server):
    pane = tmux_server.new_driven_pane()
    try:
        before = tmux_server.tmux("display", "-p", "-t", pane.session, "#{window_width}x#{window_height}").stdout
        with Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode="stream"):
            after = tmux_server.tmux("display", "-p", "-t", pane.session, "#{window_width}x#{window_height}").stdout
        assert before == after
    finally:
        pane.kill()
