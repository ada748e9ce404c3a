"""How many torch threads a CPU process takes when slp runs several side by side.

The rule, in one place: **each of P processes that slp starts on one machine gets ``cores // P`` torch threads
(at least one), unless the user set ``OMP_NUM_THREADS``, which then wins everywhere.** ``cores`` is what this
process may run on (its CPU affinity, which respects ``taskset`` and container limits), not the machine's count.

Why: an OpenMP team whose threads outnumber the free cores spins while it waits for the threads that were
descheduled, so every parallel operation costs a scheduler time slice instead of microseconds
(``benchmarks/threads.py`` measures it). Small pose models are bound by per-operation overhead rather than
arithmetic, so one process on one thread loses little, and two processes on two threads each lose a lot.

GPU processes keep torch's default: their arithmetic is on the device and a CPU thread count does not matter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: The environment variable a user sets to choose the thread count of every process.
THREADS_ENV = "OMP_NUM_THREADS"


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def user_threads() -> int | None:
    """``OMP_NUM_THREADS`` when the user set it to a positive integer, else None."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def local_ranks() -> int:
    """This node's ranks of a distributed launch (torchrun, accelerate and DeepSpeed set ``LOCAL_WORLD_SIZE``)."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` processes sharing this machine's cores (the rule above)."""
    return user_threads() or max(1, cpu_cores() // max(1, processes))


def set_process_threads(processes: int) -> int:
    """Give the calling process its share (a worker initializer, or an entry point before any work), also as
    ``OMP_NUM_THREADS`` for the processes it starts in turn (an estimator's own subprocess); returns the share.

    Changes process-wide state: library code that runs inside someone else's process uses :func:`torch_threads`
    instead, which restores the caller's count.
    """
    import torch

    threads = threads_per_process(processes)
    torch.set_num_threads(threads)
    os.environ[THREADS_ENV] = str(threads)
    return threads


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block on ``threads`` torch threads, then restore the caller's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def child_environment(processes: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for one of ``processes`` child processes started side by side: ``OMP_NUM_THREADS`` set to
    its share unless the user set it (a child's torch and OpenMP read it at start-up)."""
    env = dict(os.environ if base is None else base)
    if THREADS_ENV not in env:
        env[THREADS_ENV] = str(threads_per_process(processes))
    return env
