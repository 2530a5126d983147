"""Console speed and memory with a large ledger (prints numbers; not part of the test suite).

    python bench/ui_bench.py [--jobs 10000] [--rate 1000] [--presses 200]

Measures: time from app start to the first frame showing every job; the time from a key event
entering the app to the first frame composed after it took effect (cursor moved), while another
process changes `--rate` job states per second in the ledger; peak memory (RSS).
Targets: first frame < 1 s, key-to-repaint p95 < 50 ms, memory < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

from textual import events


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=200)
    args = parser.parse_args()

    from fceval_tui.config import load_settings
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.ledger import Ledger
    from fceval_tui.ui.app import make_app
    from fceval_tui.ui.widgets.jobs_table import JobsTable

    state_dir = Path(tempfile.mkdtemp(prefix="fceval-bench-"))
    ledger = Ledger.open(state_dir)
    t = time.perf_counter()
    specs = [JobSpec(f"agent{i % 7}", f"task-{i:05d}", f"model{i % 3}") for i in range(args.jobs)]
    _, jobs = ledger.create_run("local", 50, specs)
    print(f"ledger: {args.jobs} jobs written in {time.perf_counter() - t:.2f}s")
    settings = load_settings(environ={}, state_dir=state_dir)
    app = make_app(settings, ledger)
    path = (JobState.STARTING, JobState.RUNNING, JobState.GRADING, JobState.UPLOADING, JobState.SUCCEEDED)

    job_ids = [job.id for job in jobs]

    frames: list[float] = []
    display = app._display

    def spy(screen, renderable):
        # Every composed frame passes here (headless apps then skip the terminal write).
        if renderable is not None:
            frames.append(time.perf_counter())
        return display(screen, renderable)

    app._display = spy

    async def run() -> None:
        start = time.perf_counter()
        async with app.run_test(size=(160, 50)) as pilot:
            table = app.screen.query_one(JobsTable)
            while table.row_count < args.jobs:
                await asyncio.sleep(0.001)
            loaded = time.perf_counter()
            while not frames or frames[-1] < loaded:
                await asyncio.sleep(0.001)
            first_frame = frames[-1] - start
            print(f"first frame with all {args.jobs} jobs: {first_frame * 1000:.0f} ms")
            stop = multiprocessing.Event()
            written = multiprocessing.Value("i", 0)
            # Another process writes, as a runner in another terminal would: no GIL shared with the UI.
            proc = multiprocessing.Process(target=writer, args=(state_dir, job_ids, path, args.rate, stop, written))
            began = time.perf_counter()
            proc.start()
            latencies = []
            for i in range(args.presses):
                key = "down" if i % 40 < 20 else "up"
                expected = table.cursor + (1 if key == "down" else -1)
                t0 = time.perf_counter()
                app._driver.send_message(events.Key(key, None))
                while table.cursor != expected:
                    await asyncio.sleep(0.0005)
                moved = time.perf_counter()
                while not frames or frames[-1] < moved:
                    await asyncio.sleep(0.0005)
                latencies.append((frames[-1] - t0) * 1000)
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - began
            stop.set()
            proc.join()
            print(
                f"state changes written during the key test: {written.value} in {elapsed:.1f}s "
                f"({written.value / elapsed:.0f}/s)"
            )
            print(
                f"key to repaint: median {statistics.median(latencies):.1f} ms, "
                f"p95 {percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms ({len(latencies)} presses)"
            )
            await pilot.pause(1.0)
            shown = sum(1 for j in table.jobs.values() if j.state != JobState.PENDING)
            print(f"table caught up: {shown} jobs shown past pending")

    asyncio.run(run())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the console process (RSS): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
