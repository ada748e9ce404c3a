"""How much room each learning test has: its margins over seeds and torch thread counts.

Runs the tests marked ``learning`` (each "A beats B" check goes through ``tests/margins.py:assert_margin``, which
prints one line per check) once per (seed, thread count), in a child pytest with ``SLP_LEARNING_SEED`` and
``SLP_LEARNING_THREADS`` (the torch threads the tests compute on; the suite pins 1) set, and prints per check the
margin's minimum, mean and standard deviation beside the margin the test requires. A test's threshold is set from
this distribution, never lowered until a run passes.

    python benchmarks/learning_margins.py --seeds 0 1 2 3 4 --threads 1 2 --out runs/learning_margins.json

Runs with 1 thread go side by side (one per core); runs with more threads go one at a time, so that every run
gets the cores its thread count asks for. Finished runs are kept in ``--out`` after each run: a second call adds
to them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slp.threads import cpu_cores  # noqa: E402
from tests.margins import MARGIN_PREFIX  # noqa: E402

LINE = re.compile(re.escape(MARGIN_PREFIX) + r" (?P<name>.+) value=(?P<value>\S+) reference=(?P<reference>\S+) "
                  r"margin=(?P<margin>\S+) required=(?P<required>\S+)$")


def run_learning_tests(seed: int, threads: int, marker: str, extra: list[str]) -> dict:
    """One child pytest of the learning tests: its margins (check name → (margin, required)), outcome and time."""
    env = {**os.environ, "SLP_LEARNING_SEED": str(seed), "SLP_LEARNING_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-m", marker, "-p", "no:randomly",
                           "-p", "no:cacheprovider", *extra], cwd=REPO, env=env, capture_output=True, text=True)
    margins = {}
    for line in done.stdout.splitlines():
        match = LINE.match(line.strip())
        if match:
            margins[match["name"]] = (float(match["margin"]), float(match["required"]))
    tail = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else [done.stderr[-300:]]
    return {"seed": seed, "threads": threads, "margins": margins, "returncode": done.returncode,
            "outcome": tail[0] if tail else "", "seconds": round(time.time() - began, 1)}


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Check name → margins by (seed, threads), their min / mean / std and the margin the test requires."""
    by_check: dict[str, dict] = defaultdict(lambda: {"runs": {}})
    for run in runs:
        for name, (margin, required) in run["margins"].items():
            by_check[name]["runs"][f"seed{run['seed']}-threads{run['threads']}"] = margin
            by_check[name]["required"] = required
    for check in by_check.values():
        values = list(check["runs"].values())
        check.update(n=len(values), min=min(values), mean=statistics.mean(values),
                     std=statistics.stdev(values) if len(values) > 1 else 0.0,
                     failed=sum(v <= check["required"] for v in values))
    return dict(sorted(by_check.items()))


def write_runs(path: Path, runs: list[dict], checks: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs, "checks": checks if checks is not None else summarise(runs)},
                               indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--marker", default="learning", help="pytest marker of the tests to run")
    parser.add_argument("--out", type=Path, default=Path("runs/learning_margins.json"))
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (test files or node ids)")
    args = parser.parse_args()
    # Finished runs are kept in --out after each run: a second call (more seeds, the other thread count) adds to them.
    previous = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    runs = [r for r in previous if r["marker"] == args.marker and r["pytest_args"] == args.pytest_args]
    done = {(r["seed"], r["threads"]) for r in runs}
    todo = [(seed, threads) for threads in args.threads for seed in args.seeds if (seed, threads) not in done]
    bar = tqdm(total=len(todo), desc="learning-test runs", unit="run")
    for threads in args.threads:
        seeds = [seed for seed, t in todo if t == threads]
        with ThreadPoolExecutor(max(1, cpu_cores() // threads)) as pool:
            for run in pool.map(lambda seed, t=threads: run_learning_tests(seed, t, args.marker, args.pytest_args),
                                seeds):
                runs.append({**run, "marker": args.marker, "pytest_args": args.pytest_args})
                write_runs(args.out, runs)
                bar.update()
                bar.write(f"seed {run['seed']}, {run['threads']} thread(s): {run['outcome']} ({run['seconds']} s)")
    bar.close()
    checks = summarise(runs)
    width = max((len(name) for name in checks), default=5)
    print(f"\n{'check':<{width}}  {'n':>3} {'min':>8} {'mean':>8} {'std':>7} {'required':>8} {'failed':>6}")
    for name, c in checks.items():
        print(f"{name:<{width}}  {c['n']:>3} {c['min']:>8.2f} {c['mean']:>8.2f} {c['std']:>7.2f} "
              f"{c['required']:>8.2f} {c['failed']:>6}")
    write_runs(args.out, runs, checks)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
