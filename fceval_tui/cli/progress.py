"""Drive a run in the foreground: per-job results and a progress bar read from the ledger."""

from __future__ import annotations

import sys
import threading
from collections import Counter

from rich.console import Console
from rich.text import Text

from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from fceval_tui.cli.output import console, print_summary
from fceval_tui.config import Settings
from fceval_tui.domain.states import FINAL_STATES
from fceval_tui.ledger import Ledger
from fceval_tui.presentation import PAUSED_ICON, PAUSED_STYLE, STATE_ICON, STATE_STYLE, elapsed
from fceval_tui.services.runner import Runner, RunTotals

FINAL_MARK = {s: STATE_ICON[s] for s in ("succeeded", "failed", "cancelled", "timed_out")}
REFRESH = 0.5


def drive(settings: Settings, ledger: Ledger, run_id: str, quiet: bool = False) -> int:
    """Run every non-final job of the run until all are final; the exit status says whether all succeeded."""
    from fceval_tui.services.pool_keeper import keeping

    runner = Runner(ledger, settings)
    # A run on a warm pool: its health, idle timeout and expiry are kept while the run is driven.
    keeper = keeping(settings, ledger, on_problem=lambda problem: print(f"warning: {problem}", file=sys.stderr))
    try:
        totals = run_with_progress(runner, ledger, run_id, quiet=quiet)
    finally:
        if keeper is not None:
            keeper.stop()
    if totals is None:
        return EXIT_INTERRUPTED
    if not quiet:
        print_summary(ledger, run_id, totals, settings)
    return EXIT_OK if totals.all_succeeded else EXIT_FAILED


def run_with_progress(runner: Runner, ledger: Ledger, run_id: str, quiet: bool = False) -> RunTotals | None:
    """Drive the run in a thread; show per-job results and a progress bar from the ledger."""
    result: dict = {}

    def work() -> None:
        try:
            result["totals"] = runner.run(run_id)
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc

    # The cursor is taken before the runner starts, so a job that ends at once is still reported.
    cursor = max((e.id for e in ledger.events(run_id=run_id, newest_first=True, limit=1)), default=0)
    thread = threading.Thread(target=work, name=f"runner-{run_id}", daemon=True)
    thread.start()
    out = console()
    live = None
    if not quiet and sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=out,
            transient=True,
        )
        live.add_task(run_id, total=len(ledger.jobs(run_id=run_id)), counts="")
        live.start()
    try:
        while thread.is_alive():
            thread.join(REFRESH)
            cursor = _report(ledger, run_id, cursor, out if not quiet else None, live)
    except KeyboardInterrupt:
        runner.stop()
        if live:
            live.stop()
        thread.join(30)
        active = [j for j in ledger.jobs(run_id=run_id) if not j.state.is_final]
        print(
            f"\nstopped watching run {run_id}: {len(active)} job(s) not final; running tmux sessions go on.\n"
            f"  continue: fceval-tui resume {run_id}\n  stop:     fceval-tui cancel --run {run_id}",
            file=sys.stderr,
        )
        return None
    finally:
        if live and live.live.is_started:
            live.stop()
    _report(ledger, run_id, cursor, out if not quiet else None, None)
    if "error" in result:
        raise result["error"]
    return result["totals"]


def _report(ledger: Ledger, run_id: str, cursor: int, out: Console | None, live) -> int:
    for event in ledger.events(run_id=run_id, after=cursor):
        cursor = event.id
        if out is not None and event.kind == "credentials_expired":
            # Said once per outage: jobs wait, their compute untouched, until the credentials work again.
            line = Text(f"{PAUSED_ICON} paused   AWS credentials expired: {event.detail.get('fix', '')}")
            out.print(line, style=PAUSED_STYLE, highlight=False)
        elif out is not None and event.kind == "credentials_renewed":
            out.print(Text("▶ resumed  the AWS credentials work again", style="green"), highlight=False)
        if out is None or event.kind != "state":
            continue
        if event.to_state in FINAL_MARK:
            job = ledger.get_job(event.job_id)
            style = STATE_STYLE[event.to_state]
            detail = f" ({job.error})" if job.error and event.to_state != "succeeded" else ""
            line = Text(f"{FINAL_MARK[event.to_state]} {event.to_state:<9}", style=style)
            line.append(f" {job.id}  {job.agent}/{job.task_id}  {elapsed(job)}{detail}")
            out.print(line, highlight=False)
        elif event.to_state == "pending" and event.from_state not in (None, "pending"):
            line = Text("↻ retry", style="yellow")
            line.append(f"     {event.job_id}  {event.detail.get('reason', '')}")
            out.print(line)
    if live is not None:
        jobs = ledger.jobs(run_id=run_id)
        counts = Counter(j.state.value for j in jobs)
        done = sum(counts[s.value] for s in FINAL_STATES)
        text = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        live.update(live.task_ids[0], completed=done, counts=text)
    return cursor
