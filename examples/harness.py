#!/usr/bin/env python3
"""A stand-in evaluation harness for the demo: behaves like an agent and a grader.

    harness.py agent --agent A --task-id T [--model M] --out DIR [--seconds S]
    harness.py grade --task-id T --out DIR

The agent works through a dozen steps over S seconds (default 60, or FCEVAL_EXAMPLE_SECONDS):
each step animates a spinner and an overall progress bar on one line (rewritten with carriage
returns), then prints its result and what it saw, in colour. It writes DIR/result.json.
A task id containing "fail" makes it fail on purpose (exit 3), to show the failure path.
A task id starting with "ask-" makes it stop after a few steps and ask the operator a question on
stdin: attach to it, take control, type the answer and press enter. It waits up to S seconds,
then says so and goes on with a default answer (so a run nobody watches still finishes).
The grader turns result.json into grading_report.json.
FCEVAL_EXAMPLE_TRACE names a file to append one line per agent run to (the tests count runs with it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import sys
import time
from pathlib import Path

STEPS = (
    ("read the task description", "{files} files, {lines} lines of instructions"),
    ("list the data files", "train.csv ({rows} rows), test.csv ({test} rows)"),
    ("load the dataset", "{rows} rows, {cols} columns, {missing} missing values"),
    ("write a baseline", "baseline.py: {lines} lines"),
    ("run the baseline", "validation score {score}"),
    ("inspect the errors", "{errors} misses, mostly on the rarest class"),
    ("engineer features", "{cols} new columns"),
    ("tune hyperparameters", "best of {trials} trials: score {score}"),
    ("run the tests", "{passed}/{tests} tests pass"),
    ("write predictions", "predictions.csv ({test} rows)"),
    ("check the submission", "format ok"),
    ("write the report", "report.md ({lines} lines)"),
)
ASK_AFTER = 3  # steps done before an "ask-" task asks its question
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
TICK = 0.25  # seconds between two drawings of the progress line
BAR = 20

BOLD, DIM, RED, GREEN, YELLOW, CYAN, RESET = (f"\033[{c}m" for c in ("1", "2", "31", "32", "33", "36", "0"))
CLEAR_LINE = "\r\033[K"


def progress_line(frame: int, step: int, action: str, done: float) -> str:
    filled = int(done * BAR)
    bar = "#" * filled + "." * (BAR - filled)
    spin = SPINNER[frame % len(SPINNER)]
    return f"{CLEAR_LINE}{CYAN}{spin}{RESET} step {step:2d}/{len(STEPS)} {action:<26} [{bar}] {done * 100:3.0f}%"


def ask(question: str, default: str, timeout: float) -> str:
    """Print the question and wait up to `timeout` seconds for a line on stdin."""
    print(f"{BOLD}{YELLOW}? {question}{RESET}")
    print(f"{DIM}  type an answer and press enter (attach, ctrl+t to take control); waiting {timeout:.0f} s{RESET}")
    sys.stdout.write("> ")
    sys.stdout.flush()
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    answer = sys.stdin.readline().strip() if ready else None
    if answer:
        print(f"{GREEN}✓ the operator says: {answer}{RESET}")
        return answer
    why = "stdin is closed" if ready else f"no answer after {timeout:.0f} s"
    print(f"\n{YELLOW}! {why}: going on with {default!r}{RESET}")
    return default


def agent(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trace = os.environ.get("FCEVAL_EXAMPLE_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"agent": args.agent, "task_id": args.task_id, "pid": os.getpid()}) + "\n")
    seconds = args.seconds if args.seconds is not None else float(os.environ.get("FCEVAL_EXAMPLE_SECONDS", "60"))
    rng = random.Random(f"{args.agent}/{args.task_id}")
    step_seconds = seconds / len(STEPS)
    ticks = max(1, round(step_seconds / TICK))
    print(
        f"{BOLD}{CYAN}[{args.agent}]{RESET} task {BOLD}{args.task_id}{RESET} with model "
        f"{args.model or '(default)'}: {len(STEPS)} steps, about {seconds:.0f} s"
    )
    metric = "accuracy"
    frame = 0
    for step, (action, seen) in enumerate(STEPS, start=1):
        began = time.monotonic()
        for tick in range(ticks):
            done = (step - 1 + tick / ticks) / len(STEPS)
            sys.stdout.write(progress_line(frame, step, action, done))
            sys.stdout.flush()
            frame += 1
            time.sleep(step_seconds / ticks)
        took = time.monotonic() - began
        done_line = f"{GREEN}✓{RESET} step {step:2d}/{len(STEPS)} {BOLD}{action}{RESET} {DIM}({took:.1f} s){RESET}"
        print(CLEAR_LINE + done_line)
        values = {
            "files": rng.randint(2, 9),
            "lines": rng.randint(20, 400),
            "rows": rng.randint(1000, 90000),
            "test": rng.randint(100, 9000),
            "cols": rng.randint(5, 60),
            "missing": rng.randint(0, 300),
            "score": f"{rng.random():.3f}",
            "errors": rng.randint(3, 90),
            "trials": rng.randint(8, 64),
            "tests": 20,
            "passed": rng.randint(12, 20),
        }
        print(f"{DIM}    → {seen.format(**values)}{RESET}")
        if step == ASK_AFTER and args.task_id.startswith("ask-"):
            metric = ask("which metric should I optimise? (accuracy, f1, auc)", metric, seconds)
            print(f"{DIM}    → optimising {metric}{RESET}")
    if "fail" in args.task_id:
        print(f"{RED}error:{RESET} the agent could not solve {args.task_id!r}", file=sys.stderr)
        (out / "error.txt").write_text("deliberate failure for the demo\n", encoding="utf-8")
        return 3
    result = {
        "agent": args.agent,
        "task_id": args.task_id,
        "model": args.model,
        "metric": metric,
        "answer": rng.randint(0, 100),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{GREEN}done:{RESET} wrote {out / 'result.json'}")
    return 0


def grade(args: argparse.Namespace) -> int:
    out = Path(args.out)
    result_file = out / "result.json"
    if not result_file.is_file():
        print(f"grader: {result_file} is missing", file=sys.stderr)
        return 4
    result = json.loads(result_file.read_text(encoding="utf-8"))
    score = (result["answer"] % 10) / 10
    report = {"task_id": args.task_id, "score": score, "passed": score >= 0.3}
    (out / "grading_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"grader: {args.task_id} scored {score:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    a = sub.add_parser("agent")
    a.add_argument("--agent", required=True)
    a.add_argument("--task-id", required=True)
    a.add_argument("--model", default="")
    a.add_argument("--out", required=True)
    a.add_argument("--seconds", type=float, help="how long the agent works (default: FCEVAL_EXAMPLE_SECONDS or 60)")
    g = sub.add_parser("grade")
    g.add_argument("--task-id", required=True)
    g.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return agent(args) if args.step == "agent" else grade(args)


if __name__ == "__main__":
    raise SystemExit(main())
