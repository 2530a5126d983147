#!/usr/bin/env python3
"""A stand-in evaluation harness for the demo: behaves like an agent and a grader.

    harness.py agent --agent A --task-id T [--model M] --out DIR [--seconds S]
    harness.py grade --task-id T --out DIR

The agent prints progress (plain lines, colours and a carriage-return progress bar) for a few
seconds and writes DIR/result.json. A task id containing "fail" makes it fail on purpose (exit 3)
so the demo shows the failure path. The grader turns result.json into grading_report.json.
Set FCEVAL_EXAMPLE_SECONDS to change the default duration; FCEVAL_EXAMPLE_TRACE to append one
line per agent run to a file (the tests count runs with it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path


def agent(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trace = os.environ.get("FCEVAL_EXAMPLE_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"agent": args.agent, "task_id": args.task_id, "pid": os.getpid()}) + "\n")
    seconds = args.seconds if args.seconds is not None else float(os.environ.get("FCEVAL_EXAMPLE_SECONDS", "4"))
    steps = 10
    rng = random.Random(f"{args.agent}/{args.task_id}")
    print(f"\033[1;36m[{args.agent}]\033[0m starting task {args.task_id!r} with model {args.model or '(default)'}")
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        print(f"step {step}/{steps}: thinking about {args.task_id} (score so far {rng.random():.3f})")
        bar = "#" * step + "." * (steps - step)
        sys.stdout.write(f"\rprogress [{bar}] {step * 10:3d}%")
        sys.stdout.flush()
        sys.stdout.write("\n")
    if "fail" in args.task_id:
        print(f"\033[31merror:\033[0m the agent could not solve {args.task_id!r}", file=sys.stderr)
        (out / "error.txt").write_text("deliberate failure for the demo\n", encoding="utf-8")
        return 3
    result = {"agent": args.agent, "task_id": args.task_id, "model": args.model, "answer": rng.randint(0, 100)}
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\033[32mdone:\033[0m wrote {out / 'result.json'}")
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
    a.add_argument("--seconds", type=float)
    g = sub.add_parser("grade")
    g.add_argument("--task-id", required=True)
    g.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return agent(args) if args.step == "agent" else grade(args)


if __name__ == "__main__":
    raise SystemExit(main())
