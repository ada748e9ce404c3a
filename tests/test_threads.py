"""slp's thread rule (slp/threads.py) where slp itself starts several CPU processes: the benchmarks' side-by-side
jobs (benchmarks/ablations.py:run_grid, which benchmarks/real_islr.py uses too), which also end with the harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slp.threads import THREADS_ENV, cpu_cores, threads_per_process
from tests.conftest import REPO_ROOT


def _thread_counts(_: int) -> tuple[int, int]:
    """What one job sees: its torch threads, and the count a run that sizes its own threads by the rule takes
    (slp-finetune's ``run_task`` on one rank without DataLoader workers)."""
    return torch.get_num_threads(), threads_per_process(1)


def test_side_by_side_jobs_and_the_runs_inside_them_keep_their_share(monkeypatch):
    from benchmarks.ablations import run_grid

    monkeypatch.delenv(THREADS_ENV, raising=False)  # the rule's own share, not a user's choice
    share = max(1, cpu_cores() // 2)
    # A fine-tuning inside a job must not take every core: two jobs would then each run on every core, beside
    # each other (DEVELOPERS.md: the 14x slower step).
    assert run_grid(_thread_counts, [(0,), (1,)], jobs=2, desc="jobs") == [(share, share)] * 2


def test_the_user_s_thread_count_wins(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert threads_per_process(1) == threads_per_process(8) == 3
    monkeypatch.setenv(THREADS_ENV, "0")  # not a count: the rule's share
    assert threads_per_process(1) == cpu_cores()


#: A harness whose two jobs write their process ids and then sleep: argv[1] is the folder for the ids.
SLEEPING_HARNESS = """
import os, sys, time
from pathlib import Path
from benchmarks.ablations import run_grid

def job(k):
    written = Path(sys.argv[1]) / f".{k}"
    written.write_text(str(os.getpid()))
    written.rename(written.with_name(f"{k}.pid"))  # whole when the test sees it
    time.sleep(600)

if __name__ == "__main__":
    run_grid(job, [(0,), (1,)], jobs=2, desc="jobs")
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie stays until whatever adopted it reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the jobs' parent-death signal is Linux's")
def test_jobs_end_when_the_harness_is_killed(tmp_path):
    """A killed harness takes its jobs with it: left running, a job keeps its core and its pre-training's lock for
    the rest of its run, and the next call of the benchmark waits on that lock."""
    script = tmp_path / "harness.py"
    script.write_text(SLEEPING_HARNESS)
    harness = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT), THREADS_ENV: "1"})
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and harness.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        jobs = [int(p.read_text()) for p in sorted(tmp_path.glob("*.pid"))]
        assert len(jobs) == 2 and all(map(_running, jobs))
    finally:
        harness.send_signal(signal.SIGKILL)  # no handler, no pool shutdown: only the kernel can end the jobs
        harness.wait()
    deadline = time.time() + 30
    while any(map(_running, jobs)) and time.time() < deadline:
        time.sleep(0.2)
    left = [pid for pid in jobs if _running(pid)]
    for pid in left:  # not to leave them sleeping beside the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, "a job outlived its harness"
