"""Seconds per training step of the ``tiny`` SignPoseEncoder when CPU processes share the cores: torch's default
thread count (every core in every process) against ``slp.threads``' rule (``cores // processes`` each).

Three cases, each timed in fresh child processes so that no thread pool is reused:

- ``alone``: one process on an idle machine;
- ``side by side``: ``cores`` training processes at once (the ablation harness's ``--jobs``, two fine-tuning
  runs, extraction workers);
- ``beside a busy process``: one training process while one other program keeps a core busy. slp cannot see
  other programs: there the user sets ``OMP_NUM_THREADS``, which the rule then follows everywhere.

    python benchmarks/threads.py --steps 20 --out runs/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slp.threads import cpu_cores  # noqa: E402

STEP = """
import sys, time, torch
from slp.config import load_config
from pretrain.config import PretrainRunConfig
from slp.models.sign_encoder import SignPoseEncoder
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
encoder = SignPoseEncoder(load_config(PretrainRunConfig, "configs/pretrain/tiny.yaml").model.encoder)
optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
pose, mask = torch.randn(32, 32, 79, 3), torch.ones(32, 32, dtype=torch.bool)
def step():
    loss = encoder(pose, mask).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
step()  # warm-up: allocations and the thread pool
began = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - began) / steps)
"""
BUSY = "import time\nend = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < end: pass\n"


def seconds_per_step(threads: int, processes: int, steps: int, busy: bool) -> list[float]:
    """Each of ``processes`` training processes' seconds per step, all started together (beside a busy-looping
    process when ``busy``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    spinner = subprocess.Popen([sys.executable, "-c", BUSY, "600"]) if busy else None
    try:
        runs = [subprocess.Popen([sys.executable, "-c", STEP, str(threads), str(steps)], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        return [float(run.communicate()[0].strip().splitlines()[-1]) for run in runs]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/threads.json"))
    args = parser.parse_args()
    cores = cpu_cores()
    cases = {"alone": (1, False), "side by side": (cores, False), "beside a busy process": (1, True)}
    rows = []
    began = time.time()
    for case, (processes, busy) in cases.items():
        rule = max(1, cores // processes)  # what slp gives each process it starts; it cannot see other programs
        for threads in sorted({cores, rule, 1}, reverse=True):
            times = seconds_per_step(threads, processes, args.steps, busy)
            names = (("torch default", cores), ("slp rule", rule))
            setting = " = ".join(name for name, value in names if value == threads)
            rows.append({"case": case, "processes": processes, "busy_beside": busy, "threads": threads,
                         "setting": setting, "seconds_per_step": statistics.mean(times), "per_process": times})
            print(f"{case:<22} {threads} thread(s) × {processes} process(es) {f'({setting})' if setting else '':<32}"
                  f"{statistics.mean(times):.3f} s/step", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "steps": args.steps, "rows": rows,
                                    "seconds": round(time.time() - began, 1)}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
