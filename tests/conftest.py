"""Shared fixtures: the real-data folder (skipped when absent) and the tiny local mBART stand-in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("SLP_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` (or ``$SLP_REALDATA``); tests using it skip cleanly when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} not present")
    return REALDATA
