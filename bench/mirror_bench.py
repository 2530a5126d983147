"""Pane mirror benchmark: full-scrollback diffing vs the mirror (streaming and polling).

A pane holds 50,000 lines of history and then receives one new line every TICK seconds. Each
approach watches the same kind of output in turn, in one run:

* naive:   `capture-pane -p -S -` every poll, then find the previous buffer in the new one
           (what the source documents do);
* stream:  services.mirror.Mirror in streaming mode (tmux -C control client);
* poll:    services.mirror.Mirror in polling mode (atomic window captures).

Printed per approach: bytes moved per update (one update = one new line), CPU time per update
(this process's consumer thread + tmux client processes it spawned + the tmux server), and the
latency from a line being printed (its CLOCK_MONOTONIC stamp) to it being delivered.

Usage: python bench/mirror_bench.py [--ticks 150] [--tick 0.03] [--interval 0.1] [--history 50000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fceval_tui.services.mirror import Mirror
from fceval_tui.transports.local import LocalTransport

PRINTER = r"""
import os, sys, time
fifo = sys.argv[1]
for i in range(int(sys.argv[2])):
    sys.stdout.write(f"history line {i:06d} " + "x" * 40 + "\n")
sys.stdout.flush()
while True:
    with open(fifo) as f:
        command = f.read().split()
    if not command:
        continue
    if command[0] == "exit":
        break
    ticks, pause = int(command[0]), float(command[1])
    for i in range(ticks):
        time.sleep(pause)
        sys.stdout.write(f"tick {i} {time.perf_counter():.6f}\n")
        sys.stdout.flush()
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("TMUX", None)
    return e


class Pane:
    def __init__(self, history: int, workdir: Path) -> None:
        self.socket = f"fceval-bench-{uuid.uuid4().hex[:8]}"
        self.args = ("-L", self.socket)
        self.fifo = workdir / "fifo"
        os.mkfifo(self.fifo)
        printer = workdir / "printer.py"
        printer.write_text(PRINTER)
        conf = workdir / "tmux.conf"
        conf.write_text(f"set -g history-limit {history + 10_000}\n")
        self.tmux(
            "-f",
            str(conf),
            "new-session",
            "-d",
            "-s",
            "bench",
            "-x",
            "120",
            "-y",
            "40",
            sys.executable,
            str(printer),
            str(self.fifo),
            str(history),
        )
        deadline = time.monotonic() + 120
        while int(self.tmux("display", "-p", "-t", "bench", "#{history_size}").strip() or 0) < history - 40:
            if time.monotonic() > deadline:
                raise SystemExit("the pane did not fill its history")
            time.sleep(0.1)
        self.server_pid = int(self.tmux("display", "-p", "#{pid}").strip())

    def tmux(self, *words: str) -> str:
        return subprocess.run(
            ["tmux", *self.args, *words], capture_output=True, text=True, env=env(), check=True
        ).stdout

    def start_ticks(self, ticks: int, pause: float) -> None:
        with open(self.fifo, "w") as f:
            f.write(f"{ticks} {pause}\n")

    def server_cpu(self) -> float:
        fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        subprocess.run(["tmux", *self.args, "kill-server"], capture_output=True, env=env())


def stamp_of(line: str) -> float | None:
    parts = line.split()
    if len(parts) == 3 and parts[0] == "tick":
        return float(parts[2])
    return None


class Phase:
    """Runs one consumer while the pane prints `ticks` lines; collects bytes, CPU and latencies."""

    def __init__(self, name: str, pane: Pane, ticks: int, tick: float) -> None:
        self.name, self.pane, self.ticks, self.tick = name, pane, ticks, tick
        self.latencies: list[float] = []
        self.bytes = 0
        self.thread_cpu = 0.0
        self.seen = 0

    def run(self, consume) -> None:
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        server0 = self.pane.server_cpu()
        done = threading.Event()

        def worker() -> None:
            t0 = time.thread_time()
            consume(self, done)
            self.thread_cpu = time.thread_time() - t0

        thread = threading.Thread(target=worker)
        thread.start()
        time.sleep(0.3)  # let the consumer attach / take its first look
        self.pane.start_ticks(self.ticks, self.tick)
        time.sleep(self.ticks * self.tick + 1.0)
        done.set()
        thread.join()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.child_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        self.server_cpu = self.pane.server_cpu() - server0

    def deliver(self, lines: list[str]) -> None:
        now = time.perf_counter()
        for line in lines:
            stamp = stamp_of(line)
            if stamp is not None:
                self.latencies.append(now - stamp)
                self.seen += 1

    def report(self) -> dict:
        lat = sorted(self.latencies) or [float("nan")]
        updates = max(1, self.seen)
        return {
            "name": self.name,
            "delivered": f"{self.seen}/{self.ticks}",
            "bytes/update": self.bytes / updates,
            "cpu ms/update (consumer+clients)": 1000 * (self.thread_cpu + self.child_cpu) / updates,
            "cpu ms/update (tmux server)": 1000 * self.server_cpu / updates,
            "latency median ms": 1000 * statistics.median(lat),
            "latency p95 ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
        }


def naive(interval: float):
    def consume(phase: Phase, done: threading.Event) -> None:
        transport = LocalTransport(env=env())
        previous: str | None = None
        while not done.is_set():
            started = time.monotonic()
            current = transport.run(["tmux", *phase.pane.args, "capture-pane", "-p", "-t", "bench", "-S", "-"]).stdout
            phase.bytes += len(current)
            if previous is not None:
                pb = previous.strip()
                if pb and pb in current:
                    idx = current.index(pb)
                    start = idx + pb.rfind("\n") + 1 if "\n" in pb else idx
                    # The seed returns current[start:]: the previous last line and what follows.
                    phase.deliver(current[start:].splitlines()[1:])
            previous = current
            done.wait(max(0.0, interval - (time.monotonic() - started)))

    return consume


def mirror(mode: str, interval: float):
    def consume(phase: Phase, done: threading.Event) -> None:
        m = Mirror(LocalTransport(env=env()), phase.pane.args, "bench", mode=mode, poll_interval=interval)
        with m:
            start_bytes = m.bytes_read
            while not done.is_set():
                update = m.poll(timeout=0.1)
                phase.deliver(update.lines)
            phase.bytes = m.bytes_read - start_bytes

    return consume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=150)
    parser.add_argument("--tick", type=float, default=0.03, help="seconds between new lines")
    parser.add_argument("--interval", type=float, default=0.1, help="poll interval (naive and polling)")
    parser.add_argument("--history", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pane = Pane(args.history, Path(tmp))
        try:
            hsize = pane.tmux("display", "-p", "-t", "bench", "#{history_size}").strip()
            print(
                f"pane history: {hsize} lines; {args.ticks} new lines, one every {args.tick * 1000:.0f} ms; "
                f"poll interval {args.interval * 1000:.0f} ms"
            )
            rows = []
            for name, consume in (
                ("naive full capture", naive(args.interval)),
                ("mirror streaming", mirror("stream", args.interval)),
                ("mirror polling", mirror("poll", args.interval)),
            ):
                phase = Phase(name, pane, args.ticks, args.tick)
                phase.run(consume)
                rows.append(phase.report())
        finally:
            pane.close()
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    print()
    print(" " * width + "".join(f"{r['name']:>22}" for r in rows))
    for key in keys[1:]:
        cells = []
        for r in rows:
            v = r[key]
            cells.append(f"{v:>22.1f}" if isinstance(v, float) else f"{v:>22}")
        print(f"{key:<{width}}" + "".join(cells))
    naive_bytes = rows[0]["bytes/update"]
    print()
    for r in rows[1:]:
        print(
            f"{r['name']}: {naive_bytes / max(r['bytes/update'], 1e-9):.0f}x fewer bytes per update than full capture"
        )
    print(f"targets: >=100x fewer bytes; streaming median < 5 ms; polling median <= {args.interval * 500 + 5:.0f} ms")


if __name__ == "__main__":
    main()
