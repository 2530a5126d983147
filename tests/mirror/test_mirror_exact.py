"""The mirror against the true transcript of a real tmux pane (pipe-pane), property-based.

Streaming must deliver exactly the transcript's completed lines. Polling must too, unless it
reports a gap: then what it delivered is the newest part of that step's lines, and the gap is a
lower bound of the rows it missed (see the services.mirror docstring for why only a bound).
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fceval_tui.services.mirror import Mirror
from fceval_tui.services.mirror.control_mode import LineAssembler, cell_width
from tests.helpers.tmux import HISTORY_LIMIT, SYNC_TIMEOUT, WIDTH, true_lines

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
    # The suite runs a fixed set of examples (no example database between runs); set
    # FCEVAL_HYPOTHESIS_EXAMPLES to search randomly and deeper.
    derandomize="FCEVAL_HYPOTHESIS_EXAMPLES" not in os.environ,
    database=None,
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
# More rows than the history holds, repeating the previous output: 5 trims read as none.
@example(steps=[_burst(100, False), _burst(204, False)])
def test_polling_is_exact_or_reports_the_gap(tmux_server, steps):
    pane = tmux_server.new_driven_pane()
    model = LineAssembler(WIDTH)
    try:
        mirror = Mirror(tmux_server.transport(), tmux_server.args, pane.session, mode="poll", poll_interval=0)
        mirror.start()
        got: list[str] = []
        flagged = False
        state = _pane_state(tmux_server, pane)
        for step in steps:
            pane.emit(step)
            before, state = state, _pane_state(tmux_server, pane)
            # Lines printed and then cleared between two polls never exist in the pane when it is
            # read: polling reports them only when the clear is detectable (see the docstring).
            cut = step.rfind(CLEAR) + len(CLEAR) if CLEAR in step else 0
            unobservable = model.feed(step[:cut])
            observable = model.feed(step[cut:])
            expected = unobservable + observable
            update = mirror.poll()
            got_before = list(got)
            got += update.lines
            if state == before:
                # The pane reads exactly as at the last poll (e.g. a clear reprinted the same rows):
                # no poller can tell that anything happened, so nothing may be reported.
                assert update.lines == []
                flagged = True
                continue
            if update.gap == 0 and update.gap_exact:
                missed = len(observable) - len(update.lines)
                if (
                    missed > 0
                    and update.lines == observable[missed:]
                    and _reprinted(step, observable, got_before, missed)
                ):
                    flagged = True
                    continue
                if missed > 0 and update.lines == observable[missed:]:
                    # The one ambiguity left (see the polling docstring): with the history full, output
                    # that repeats the rows above it at a distance of whole trims (a tenth of the limit),
                    # e.g. with a period dividing a trim, reads the same whether k or more trims
                    # happened. Then whole trims' worth of rows go unseen.
                    assert sum(rows_of(line) for line in observable[:missed]) % (HISTORY_LIMIT // 10) == 0
                    assert _periodic(observable, HISTORY_LIMIT // 10) or _repeated(observable, got_before, missed)
                    flagged = True
                    continue
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
# Blank lines, then a clear (which also erases the scrollback) while the stream is down.
@example(steps=[b"\n\n" + CLEAR + b"\n", b"\n"], drop_after=1)
@example(steps=[b"\n" + CLEAR, b"\n"], drop_after=1)
def test_a_dropped_stream_resumes_after_the_last_line_without_duplicates(tmux_server, steps, drop_after):
    from fceval_tui.transports.retry import RetryPolicy

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
        drop = min(drop_after, len(steps) - 1)
        with mirror:
            for i, step in enumerate(steps):
                if i == drop:
                    state_before = _pane_state(tmux_server, pane)
                    _detach_control_clients(tmux_server, pane.session)
                pane.emit(step)
                if i == drop:
                    # The outage is exactly this step: let the mirror notice and re-attach now.
                    invisible = _pane_state(tmux_server, pane) == state_before
                    deadline = time.monotonic() + SYNC_TIMEOUT
                    while not (mirror.reconnects == 1 and mirror.in_sync):
                        assert time.monotonic() < deadline, "the mirror did not reconnect"
                        update = mirror.poll(timeout=0.05)
                        gap_reported |= update.gap > 0 or not update.gap_exact
                        got += update.lines
                update = mirror.poll(timeout=0)
                gap_reported |= update.gap > 0 or not update.gap_exact
                got += update.lines
            pane.finish()
            for update in mirror:
                gap_reported |= update.gap > 0 or not update.gap_exact
                got += update.lines
        # Lines printed and cleared while disconnected were never in the pane to be read again.
        model = LineAssembler(WIDTH)
        before = [line for step in steps[:drop] for line in model.feed(step)]
        outage = steps[drop]
        cut = outage.rfind(CLEAR) + len(CLEAR) if CLEAR in outage else 0
        unseen = model.feed(outage[:cut])
        seen = model.feed(outage[cut:])
        after = [line for step in steps[drop + 1 :] for line in model.feed(step)]
        assert before + unseen + seen + after == true_lines(pane.transcript())
        if invisible:
            # The outage left the pane reading exactly as before it: nothing can show what happened.
            assert got == before + after
        elif not gap_reported:
            missed = len(before) + len(seen) + len(after) - len(got)
            if missed > 0 and got == before + seen[missed:] + after and _reprinted(outage, seen, before, missed):
                pass
            elif missed > 0 and got == before + seen[missed:] + after:
                # The periodic-output ambiguity of reading history after trims (see the polling test).
                assert sum(rows_of(line) for line in seen[:missed]) % (HISTORY_LIMIT // 10) == 0
                assert _periodic(before + seen, HISTORY_LIMIT // 10) or _repeated(seen, before, missed)
            else:
                assert got == before + seen + after
        else:
            # Output larger than the history, or cleared, while disconnected may be missed (and is
            # reported); nothing is repeated and everything after the reconnect is complete.
            assert _is_subsequence(got, before + unseen + seen + after)
            assert got[len(got) - len(after) :] == after or not after
    finally:
        pane.kill()


def _reprinted(step: bytes, observable: list[str], earlier: list[str], missed: int) -> bool:
    """A clear followed by exactly the lines that stood at those rows before it: the pane reads as if
    nothing had been cleared, so a poller cannot tell (documented limit of polling)."""
    return CLEAR in step and observable[:missed] == earlier[len(earlier) - missed :]


def _repeated(observable: list[str], earlier: list[str], missed: int) -> bool:
    """The missed lines print again the lines just above them: the trims that dropped the old copy
    leave the pane reading as if the missed lines had never been printed."""
    return len(earlier) >= missed and observable[:missed] == earlier[len(earlier) - missed :]


def _periodic(lines: list[str], trim: int) -> bool:
    """Whether the last rows repeat with a period dividing `trim` (one line per row here)."""
    tail = lines[-2 * trim :]
    return any(all(tail[i] == tail[i + p] for i in range(len(tail) - p)) for p in range(1, trim + 1) if trim % p == 0)


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(any(line == other for other in it) for line in short)


def _pane_state(server, pane) -> tuple[str, str]:
    """Everything a poller can know: the whole pane text, history size and cursor."""
    text = server.tmux("capture-pane", "-p", "-J", "-t", pane.session, "-S", "-", "-E", "-").stdout
    where = server.tmux("display", "-p", "-t", pane.session, "#{history_size} #{cursor_x} #{cursor_y}").stdout
    return text, where


def _detach_control_clients(server, session: str) -> None:
    out = server.tmux("list-clients", "-t", session, "-F", "#{client_name} #{client_control_mode}").stdout
    for line in out.splitlines():
        name, control = line.rsplit(" ", 1)
        if control == "1":
            server.tmux("detach-client", "-t", name, check=False)
