"""The learning tests' seed and margins.

Every "A beats B" check of a learning test goes through :func:`assert_margin`, which prints one parseable line per
check before it asserts. ``benchmarks/learning_margins.py`` runs the learning tests over seeds
(``SLP_LEARNING_SEED``) and thread counts (``SLP_LEARNING_THREADS``) and collects those lines: each threshold in a test
comes from that measured distribution, and the test's docstring quotes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: The seed of the learning tests' pre-training and fine-tuning runs: 0 in the suite.
LEARNING_SEED = int(os.environ.get("SLP_LEARNING_SEED", "0"))
#: The torch threads every learning test computes on, whatever the machine's cores: float sums split over another
#: number of threads give other numbers, and a margin is measured for one thread count (tests/conftest.py pins it).
LEARNING_THREADS = int(os.environ.get("SLP_LEARNING_THREADS", "1"))

#: What :func:`assert_margin` prints first on its line; the benchmark reads the lines that start with it.
MARGIN_PREFIX = "learning margin:"


def assert_margin(name: str, value: float, reference: float, required: float = 0.0) -> None:
    """Assert ``value - reference > required`` (e.g. pre-trained top-1 minus scratch top-1 above 0 points), after
    printing ``name``, both values and the margin."""
    margin = value - reference
    print(f"\n{MARGIN_PREFIX} {name} value={value:.4f} reference={reference:.4f} margin={margin:.4f} "
          f"required={required:.4f}")
    assert margin > required, f"{name}: {value:.4f} - {reference:.4f} = {margin:.4f}, required > {required}"


@contextlib.contextmanager
def learning_threads() -> Iterator[None]:
    """Compute on LEARNING_THREADS torch threads, and have the processes started meanwhile do so too (through
    ``OMP_NUM_THREADS``, which slp's thread rule follows), so that margins are those measured for that count on
    any machine; puts both back afterwards."""
    from slp.threads import THREADS_ENV, torch_threads

    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(LEARNING_THREADS)
    try:
        with torch_threads(LEARNING_THREADS):
            yield
    finally:
        if before is None:
            del os.environ[THREADS_ENV]
        else:
            os.environ[THREADS_ENV] = before
