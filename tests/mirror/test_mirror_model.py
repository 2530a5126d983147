"""The pure parts of the mirror: control-mode parsing, %output unescaping, the line model."""

from __future__ import annotations

import uuid

import pytest

from fceval_tui.services.mirror import MirrorUpdate
from fceval_tui.services.mirror.control_mode import Block, ControlParser, LineAssembler, Notice, Output, unescape_output
from fceval_tui.services.mirror.tmux_io import tmux_quote


def test_output_unescaping_restores_control_bytes_and_backslashes():
    assert unescape_output(rb"a\015\012b\134c\033[0m") == b"a\r\nb\\c\x1b[0m"
    assert unescape_output("é中".encode()) == "é中".encode()  # bytes >= 0x80 travel raw


def test_parser_splits_output_replies_and_notices_across_arbitrary_chunks():
    stream = (
        b"%begin 1 10 0\r\n%end 1 10 0\r\n"
        b"%output %3 hi\\015\\012\r\n"
        b"%begin 2 11 1\r\nline one\r\n%end is not a guard\r\n%end 2 11 1\r\n"
        b"%begin 3 12 1\r\ncan't find pane: %9\r\n%error 3 12 1\r\n"
        b"Starting session with SessionId: abc\r\n"
        b"%exit\r\n"
    )
    parser = ControlParser()
    events = []
    for i in range(0, len(stream), 7):  # chunk boundaries fall anywhere, even inside a line
        events += parser.feed(stream[i : i + 7])
    assert events == [
        Block(10, False, True, []),
        Output("%3", b"hi\r\n"),
        Block(11, True, True, [b"line one", b"%end is not a guard"]),
        Block(12, True, False, [b"can't find pane: %9"]),
        Notice("text", b"Starting session with SessionId: abc"),
        Notice("%exit", b""),
    ]


def test_parser_accepts_the_dcs_wrapper_of_control_mode_on_a_terminal():
    events = ControlParser().feed(b"\x1bP1000p%output %1 x\n")
    assert events == [Output("%1", b"x")]


# The definition of a completed line (services.mirror docstring), case by case.
@pytest.mark.parametrize(
    ("data", "lines", "partial"),
    [
        (b"plain\n", ["plain"], ""),
        (b"fetch 1%\rfetch 50%\rfetch 100%\n", ["fetch 100%"], ""),  # a progress bar is one line
        (b"100%\r50%\n", ["50%%"], ""),  # a shorter rewrite leaves the tail, as on screen
        (b"typing\x1b[2K\rfinal\n", ["final"], ""),  # erase-line
        (b"\x1b[1;32mgreen\x1b[0m bold  \n", ["green bold"], ""),  # colours removed, blanks trimmed
        (b"a\nb\n\x1b[H\x1b[2J\x1b[3Jc\n", ["a", "b", "c"], ""),  # clear: no line, nothing taken back
        (b"prompt$ \x1b[H\x1b[2Jafter\n", ["after"], ""),  # an unfinished line erased by clear is dropped
        (b"no newline yet", [], "no newline yet"),
        (b"\x1b]0;window title\x07titled\n", ["titled"], ""),  # OSC strings are not text
        ("中文 and wide\n".encode(), ["中文 and wide"], ""),
    ],
)
def test_line_model(data, lines, partial):
    model = LineAssembler(80)
    assert model.feed(data) == lines
    assert model.partial() == partial


def test_carriage_return_in_a_wrapped_line_returns_to_the_start_of_its_screen_row():
    model = LineAssembler(10)
    # 13 characters wrap onto a second row; CR goes to that row's start, as tmux does.
    assert model.feed(b"0123456789abc\rXY\n") == ["0123456789XYc"]
    # Exactly filling the row leaves the cursor pending on it: CR returns to that row.
    assert model.feed(b"0123456789\rX\n") == ["X123456789"]


def test_utf8_split_across_chunks_is_reassembled():
    model = LineAssembler(80)
    data = "é中\n".encode()
    assert model.feed(data[:1]) + model.feed(data[1:3]) + model.feed(data[3:]) == ["é中"]


def test_a_wide_character_that_does_not_fit_moves_to_the_next_row_without_a_blank():
    model = LineAssembler(5)
    assert model.feed("abcd中\n".encode()) == ["abcd中"]


# Where the pane's rows stand relative to the lines: emptied by a clear (a known place), or moved.
@pytest.mark.parametrize(
    ("data", "cleared_after", "moved"),
    [
        (b"a\nb\n\x1b[H\x1b[2J\x1b[3Jc\n", 2, False),  # `clear`: after 2 lines, nothing is left
        (b"a\n\x1b[2J\x1b[1;1H\x1b[3J", 1, False),  # the same with erase and home swapped
        (b"a\n\x1b[H\x1b[J\x1b[3J", 1, False),  # erase below the cursor, from home: the whole screen
        (b"a\n\x1b[3J\x1b[H\x1b[2J", None, True),  # scrollback first: the screen then goes to history
        (b"a\n\x1b[H\x1b[2Jb\x1b[3J", None, True),  # text written before the scrollback is erased
        (b"a\n\x1b[H\x1b[2J\n\x1b[3J", None, True),  # the cursor left home before it
        (b"a\n\x1b[H\x1b[2J\x1b[5G\x1b[3J", None, True),  # ... or its column
        (b"\x1b[H\x1b[2J\x1b[3J\x1b[5;1Hx\n", 0, True),  # cursor addressing after the clear
        (b"a\n\x1b[1;32mb\x1b[0m\r\x1b[Kc\n", None, False),  # colours, erase-line: rows follow lines
        (b"\x1b[?1049h\x1b[H\x1b[2J\x1b[3Jx\n\x1b[?1049l", None, False),  # the alternate screen
    ],
)
def test_line_model_reports_clears_and_moved_rows(data, cleared_after, moved):
    model = LineAssembler(80)
    model.feed(data)
    assert (model.cleared_after, model.moved_rows) == (cleared_after, moved)


@pytest.mark.parametrize("word", ["plain", "%3", "$1", "#{pane_id} #{x}", 'q"uote\\$HOME ;', ""])
def test_tmux_quote_survives_tmux_own_command_parser(word, tmp_path):
    import subprocess

    # Control mode reads command lines: check a quoted word through tmux's parser (set, then show).
    sock = f"fceval-test-{uuid.uuid4().hex[:10]}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    source = tmp_path / "cmd.conf"
    source.write_text(f"set -g @probe {tmux_quote(word)}\n")
    try:
        subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "sleep 30"], env=env, check=True)
        subprocess.run(["tmux", "-L", sock, "source-file", str(source)], env=env, check=True)
        out = subprocess.run(
            ["tmux", "-L", sock, "show", "-gv", "@probe"], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.rstrip("\n") == word
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], env=env, capture_output=True)


def test_gap_text_says_what_was_missed():
    assert MirrorUpdate(lines=["x"]).gap_text() is None
    assert MirrorUpdate(gap=12).gap_text() == "12 lines not captured"
    assert MirrorUpdate(gap=12, gap_exact=False).gap_text() == "at least 12 lines not captured"
    assert "cleared" in MirrorUpdate(gap_exact=False).gap_text()
    assert not MirrorUpdate() and MirrorUpdate(ended=True)
