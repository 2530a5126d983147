"""Console speed and memory with a large ledger (prints numbers; not part of the test suite).

    python bench/ui_bench.py [--jobs 10000] [--rate 1000] [--presses 200] [--profile FILE]

Measures: time from app start to the first frame showing every job; the time from a key event
entering the app to the first frame composed after it took effect (cursor moved), while another
process changes `--rate` job states per second in the ledger; peak memory (RSS).
The same key test runs first on a trivial Textual app (one counter on screen) under the same load:
that is the floor on this machine, and the console's numbers are printed next to it.
Targets: first frame < 600 ms, key-to-repaint p95 < 50 ms, memory < 300 MB.
`--profile FILE` writes a cProfile of the console's event loop (the main thread) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widget import Widget

SIZE = (160, 50)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def writer(state_dir, job_ids, path, rate, stop, written) -> None:
    from fceval_tui.ledger import Ledger

    ledger = Ledger.open(state_dir)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for state in path:
        for job_id in job_ids:
            if stop.is_set():
                return
            ledger.transition(job_id, state)
            with written.get_lock():
                written.value += 1
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


def fresh_ledger(jobs: int):
    """A fresh ledger of `jobs` pending jobs in one run: (state dir, ledger, job ids)."""
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.ledger import Ledger

    state_dir = Path(tempfile.mkdtemp(prefix="fceval-bench-"))
    ledger = Ledger.open(state_dir)
    specs = [JobSpec(f"agent{i % 7}", f"task-{i:05d}", f"model{i % 3}") for i in range(jobs)]
    _, created = ledger.create_run("local", 50, specs)
    return state_dir, ledger, [job.id for job in created]


class Counter(Widget):
    def render(self) -> str:
        return str(self.app.cursor)


class Floor(App):
    """The least a Textual app can do per key: repaint one small widget (no layout)."""

    BINDINGS = [Binding("down", "move(1)"), Binding("up", "move(-1)")]

    def __init__(self) -> None:
        super().__init__()
        self.cursor = 0

    def compose(self) -> ComposeResult:
        yield Counter()

    def action_move(self, delta: int) -> None:
        self.cursor += delta
        self.query_one(Counter).refresh()


@dataclass
class Result:
    first_frame: float  # ms
    latencies: list[float]  # ms
    written: int
    seconds: float

    def line(self) -> str:
        values = self.latencies
        return (
            f"first frame {self.first_frame:.0f} ms; key to repaint median {statistics.median(values):.1f} ms, "
            f"p95 {percentile(values, 0.95):.1f} ms, max {max(values):.1f} ms ({len(values)} presses; "
            f"{self.written / self.seconds:.0f} state changes/s written meanwhile)"
        )


def frame_spy(app: App, ready, cursor) -> tuple[list[tuple[float, int]], list[float]]:
    """(time, cursor shown) of every frame the app composes (headless apps then skip the terminal
    write), and the time of the first one composed once `ready()` holds."""
    frames: list[tuple[float, int]] = []
    first: list[float] = []
    display = app._display

    def spy(screen, renderable):
        if renderable is not None:
            now = time.perf_counter()
            if not first and ready():
                first.append(now)
            frames.append((now, cursor() if first else -1))
        return display(screen, renderable)

    app._display = spy
    return frames, first


async def measure(app, ready, cursor, load, presses: int, profile: cProfile.Profile | None) -> Result:
    """First frame once `ready()`, then `presses` keys (up and down) with `load` writing meanwhile."""
    frames, first = frame_spy(app, ready, cursor)
    start = time.perf_counter()
    if profile:
        profile.enable()
    async with app.run_test(size=SIZE):
        while not first:
            await asyncio.sleep(0.001)
        first_frame = (first[0] - start) * 1000
        stop = multiprocessing.Event()
        written = multiprocessing.Value("i", 0)
        # Another process writes, as a runner in another terminal would: no GIL shared with the UI.
        proc = multiprocessing.Process(target=writer, args=(*load, stop, written))
        began = time.perf_counter()
        proc.start()
        latencies = []
        for i in range(presses):
            key = "down" if i % 40 < 20 else "up"
            expected = cursor() + (1 if key == "down" else -1)
            seen = len(frames)
            t0 = time.perf_counter()
            app._driver.send_message(events.Key(key, None))
            # The first frame composed with the cursor moved (it may come before this loop wakes up).
            while not any(shown == expected for _, shown in frames[seen:]):
                await asyncio.sleep(0.0005)
            painted = next(t for t, shown in frames[seen:] if shown == expected)
            latencies.append((painted - t0) * 1000)
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - began
        stop.set()
        proc.join()
        if profile:
            profile.disable()
        if hasattr(app, "ledger"):
            await asyncio.sleep(1.0)
            from fceval_tui.domain.states import JobState
            from fceval_tui.ui.widgets.jobs_table import JobsTable

            table = app.screen.query_one(JobsTable)
            shown = sum(1 for j in table.jobs.values() if j.state != JobState.PENDING)
            print(f"  table caught up: {shown} of {written.value} changed jobs shown past pending")
    return Result(first_frame, latencies, written.value, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--profile", help="write a cProfile of the console's event loop here")
    args = parser.parse_args()

    from fceval_tui.config import load_settings
    from fceval_tui.domain.states import JobState
    from fceval_tui.ui.app import make_app
    from fceval_tui.ui.widgets.jobs_table import JobsTable

    path = (JobState.STARTING, JobState.RUNNING, JobState.GRADING, JobState.UPLOADING, JobState.SUCCEEDED)

    state_dir, _ledger, job_ids = fresh_ledger(args.jobs)
    floor = Floor()
    load = (state_dir, job_ids, path, args.rate)
    base = asyncio.run(measure(floor, lambda: True, lambda: floor.cursor, load, args.presses, None))
    print(f"floor (a trivial Textual app, same load): {base.line()}")

    t = time.perf_counter()
    state_dir, ledger, job_ids = fresh_ledger(args.jobs)
    print(f"ledger: {args.jobs} jobs written in {time.perf_counter() - t:.2f}s")
    app = make_app(load_settings(environ={}, state_dir=state_dir), ledger)

    def table() -> JobsTable:
        return app.screen.query_one(JobsTable)

    def ready() -> bool:
        return bool(app.screen.query(JobsTable)) and table().row_count >= args.jobs

    profile = cProfile.Profile() if args.profile else None
    load = (state_dir, job_ids, path, args.rate)
    ours = asyncio.run(measure(app, ready, lambda: table().cursor, load, args.presses, profile))
    print(f"console with all {args.jobs} jobs: {ours.line()}")
    p95, floor_p95 = percentile(ours.latencies, 0.95), percentile(base.latencies, 0.95)
    print(
        f"console / floor: key-to-repaint p95 {p95 / floor_p95:.1f}x ({p95:.1f} / {floor_p95:.1f} ms), "
        f"median {statistics.median(ours.latencies) / statistics.median(base.latencies):.1f}x"
    )
    if profile:
        profile.dump_stats(args.profile)
        print(f"profile of the console's event loop: {args.profile} (python -m pstats {args.profile})")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the console process (RSS): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
