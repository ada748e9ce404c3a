"""Shared fixtures: the real-data folder (skipped when absent) and the tiny local mBART stand-in."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
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


@pytest.fixture(scope="session")
def tiny_mbart_dir(tmp_path_factory) -> Path:
    """A tiny mBART + sentencepiece tokenizer trained on the synthetic corpus texts (built once per session)."""
    from slp.synthetic import SyntheticConfig, corpus_texts
    from slp.text.tiny import build_tiny_mbart

    return build_tiny_mbart(tmp_path_factory.mktemp("tiny_mbart"), corpus_texts(SyntheticConfig()))
