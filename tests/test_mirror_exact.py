"""The mirror against the true transcript of a real tmux pane (pipe-pane), property-based.

Streaming must deliver exactly the transcript's completed lines. Polling must too, unless it
reports a gap: then what it delivered is the newest part of that step's lines, and the gap is a
lower bound of the rows it missed (see the services.mirror docstring for why only a bound).
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fceval_tui.services.mirror import Mirror
from fceval_tui.services.tmux_control import LineAssembler, cell_width
from tests.tmux_fixtures import HISTORY_LIMIT, SYNC_TIMEOUT, WIDTH, tmux_server, true_lines  # noqa: F401

CLEAR = b"\x1b[H\x1b[2J\x1b[3J"  # what `clear` prints here (ncurses, with E3)
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
WIDE = st.text(st.sampled_from("中文字符测试日本語한국어ａｂc d"), min_size=1, max_size=70)


def _lines(texts: list[str]) -> bytes:
    return "".join(t + "\n" for t in texts).encode()


def _burst(n: int, periodic: bool) -> bytes:
    return _lines([f"row {i % 5}" if periodic else f"burst {i}" for i in range(n)])


OPS = st.one_of(
    st.lists(ASCII, min_size=1, max_size=5).map(_lines),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=WIDTH + 1, max_size=4 * WIDTH).map(
        lambda t: _lines([t])
    ),
    st.lists(WIDE, min_size=1, max_size=3).map(_lines),
    st.tuples(st.integers(30, 37), ASCII).map(lambda t: f"\x1b[{t[0]}m{t[1]}\x1b[0m tail\n".encode()),
    st.lists(st.integers(0, 100), min_size=1, max_size=6).map(
        lambda ps: ("\r".join(f"fetch {p}%" for p in ps) + "\n").encode()
    ),
    st.tuples(st.lists(ASCII, min_size=1, max_size=4), st.integers(2, 40)).map(lambda t: _lines(t[0]) * t[1]),
    st.tuples(st.integers(HISTORY_LIMIT // 2, 3 * HISTORY_LIMIT), st.booleans()).map(lambda t: _burst(*t)),
    st.just(CLEAR),
)
STEPS = st.lists(st.lists(OPS, min_size=1, max_size=3).map(b"".join), min_size=1, max_size=6)
SETTINGS = settings(
    # FCEVAL_HYPOTHESIS_EXAMPLES raises the count for a deeper search (kept small for the suite).
    max_examples=int(os.environ.get("FCEVAL_HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def rows_of(line: str) -> int:
    return max(1, -(-sum(cell_width(c) for c in line) // WIDTH))


@SETTINGS
@given(steps=STEPS)
def test_streaming_delivers_every_completed_line_exactly_once(tmux_server, steps):
    pane = tmux_server.new_driven_pane()
    try:
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode="stream", from_start=True)
        got: list[str] = []
        with mirror:
            for step in steps:
                pane.emit(step)
                update = mirror.poll(timeout=0)
                assert update.gap == 0 and update.gap_exact
                got += update.lines
            pane.finish()
            for update in mirror:
                assert update.gap == 0 and update.gap_exact
                got += update.lines
        assert mirror.ended
        assert got == true_lines(pane.transcript())
    finally:
        pane.kill()


@SETTINGS
@given(steps=STEPS)
def test_polling_is_exact_or_reports_the_gap(tmux_server, steps):
    pane = tmux_server.new_driven_pane()
    model = LineAssembler(WIDTH)
    try:
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode="poll", poll_interval=0)
        mirror.start()
        got: list[str] = []
        flagged = False
        for step in steps:
            pane.emit(step)
            # Lines printed and then cleared between two polls never exist in the pane when it is
            # read: polling reports them only when the clear is detectable (see the docstring).
            cut = step.rfind(CLEAR) + len(CLEAR) if CLEAR in step else 0
            unobservable = model.feed(step[:cut])
            observable = model.feed(step[cut:])
            expected = unobservable + observable
            update = mirror.poll()
            got += update.lines
            if update.gap == 0 and update.gap_exact:
                assert update.lines == observable
                flagged |= bool(unobservable)
                continue
            flagged = True
            n = len(update.lines)
            assert n <= len(expected)
            if n:
                # The newest lines survive; the oldest delivered one may be cut where history was trimmed.
                assert update.lines[1:] == expected[len(expected) - n + 1 :]
                assert expected[len(expected) - n].endswith(update.lines[0])
            missed = expected[: len(expected) - n + 1] if n else expected
            assert sum(rows_of(line) for line in missed) >= update.gap
        if not flagged:
            assert got == true_lines(pane.transcript())
    finally:
        pane.kill()


@SETTINGS
@given(steps=STEPS, drop_after=st.integers(0, 5))
def test_a_dropped_stream_resumes_after_the_last_line_without_duplicates(tmux_server, steps, drop_after):
    from fceval_tui.transports.remote import RetryPolicy

    pane = tmux_server.new_driven_pane()
    try:
        mirror = Mirror(
            tmux_server.transport(),
            tmux_server.args,
            pane.session,
            mode="stream",
            from_start=True,
            retry_policy=RetryPolicy(attempts=5, base=0.01, cap=0.05),
        )
        got: list[str] = []
        gap_reported = False
        with mirror:
            for i, step in enumerate(steps):
                if i == min(drop_after, len(steps) - 1):
                    _detach_control_clients(tmux_server, pane.session)
                pane.emit(step)
                update = mirror.poll(timeout=0)
                gap_reported |= update.gap > 0 or not update.gap_exact
                got += update.lines
            # Let the mirror notice the drop and re-attach before the pane ends (a drop racing the
            # end of the pane cannot be recovered, and is reported as such).
            deadline = time.monotonic() + SYNC_TIMEOUT
            while not (mirror.reconnects == 1 and mirror.in_sync):
                assert time.monotonic() < deadline, "the mirror did not reconnect"
                update = mirror.poll(timeout=0.05)
                gap_reported |= update.gap > 0 or not update.gap_exact
                got += update.lines
            pane.finish()
            for update in mirror:
                gap_reported |= update.gap > 0 or not update.gap_exact
                got += update.lines
        truth = true_lines(pane.transcript())
        if not gap_reported:
            assert got == truth
        else:
            # Only output larger than the history, printed while disconnected, may be missed;
            # whatever came after the reconnect is complete.
            assert len(got) < len(truth)
            keep = min(5, len(got))
            assert got[len(got) - keep :] == truth[len(truth) - keep :]
    finally:
        pane.kill()


def _detach_control_clients(server, session: str) -> None:
    out = server.tmux("list-clients", "-t", session, "-F", "#{client_name} #{client_control_mode}").stdout
    for line in out.splitlines():
        name, control = line.rsplit(" ", 1)
        if control == "1":
            server.tmux("detach-client", "-t", name, check=False)
