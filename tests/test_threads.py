"""slp's thread rule (slp/threads.py) where slp itself starts several CPU processes: the benchmarks' side-by-side
jobs (benchmarks/ablations.py:run_grid, which benchmarks/real_islr.py uses too)."""

from __future__ import annotations

import torch

from slp.threads import THREADS_ENV, cpu_cores, threads_per_process


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
