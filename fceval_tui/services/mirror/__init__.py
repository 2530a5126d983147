"""Pane mirror: the lines and the screen of a tmux pane, local or remote, exactly and cheaply.

`Mirror` (facade.py) is the entry point; it watches the pane with one of two strategies:

* streaming.py: one `tmux -C attach` control client, exact whatever the history limit (the
  default when the transport can open a stream);
* polling.py: atomic window captures through one-shot commands, exact within limits it states.

The other modules: model.py (updates and the tracker that turns snapshots into lines) and
snapshot.py (one atomic read of a window of rows) are pure; control_mode.py parses `tmux -C`
output and models one terminal line; tmux_io.py runs tmux commands and the control channel;
input.py types and pastes into the pane; tail.py prints a pane's lines (`fceval-tui tail`).

What the mirror delivers, and what "exact" means
------------------------------------------------
A *line* is completed when the program in the pane writes a line feed. Its text is what the
pane row(s) show at that moment: carriage returns overwrite from the start of the row (so a
progress bar `10%\\r55%\\r100%\\n` is one line, `100%`; a shorter rewrite leaves the tail of the
longer text, as on screen), erase-in-line erases, colours and other escape sequences are removed,
a long line that wrapped over several rows is one line, trailing blanks are trimmed. Text the
program never finishes with a line feed is not a line until the pane ends (then it is delivered
last). `clear` (cursor home + erase display + erase scrollback) is not a line and takes nothing
back: lines delivered before it stay delivered, an unfinished line it erased is dropped, and the
lines printed after it follow. Full-screen programs (alternate screen, cursor addressing) are
screen content: they appear in `screen`, not as lines.

Exact means: the sequence of lines delivered equals the sequence of completed lines of the pane's
output, none lost, none repeated, in order. When lines could not be read, the update says so
before its `lines`: `gap` rows were not captured (`gap_exact` False means the true number may be
larger, or, with `gap == 0`, that the pane was cleared and lines printed just before the clear
may be missing). A gap is never silent.

"""

from fceval_tui.services.mirror.facade import Mirror
from fceval_tui.services.mirror.model import MirrorUpdate
from fceval_tui.services.mirror.snapshot import PaneGone

__all__ = ["Mirror", "MirrorUpdate", "PaneGone"]
