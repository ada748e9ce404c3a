"""Pre-training checks its data before it loads the text encoder (a multi-GB download for users)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "pretrain/run.py", "--config", "configs/pretrain/tiny.yaml",
                           f"output={tmp_path / 'run'}", "text.name_or_path=/nonexistent/text-encoder", *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_missing_shards_are_reported_before_the_text_encoder_loads(tmp_path):
    done = _run(tmp_path, f"data.shards=[{tmp_path}/absent/*.tar]")
    assert done.returncode == 2 and "Traceback" not in done.stderr  # a user error: one line
    assert "no shard matches" in done.stderr and "absent" in done.stderr
    assert "text-encoder" not in done.stderr  # the text encoder was never asked for


def test_too_few_shards_for_the_workers_are_reported_before_the_text_encoder_loads(tmp_path):
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "corpus", SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1,
                                                                sentences_per_signer=1, shard_samples=1000))
    done = _run(tmp_path, f"data.shards=[{tmp_path}/corpus/shards/*.tar]", "data.num_workers=8")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "every reader needs at least one shard" in done.stderr
    assert "text-encoder" not in done.stderr


def test_a_missing_text_encoder_is_one_line(tmp_path):
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "corpus", SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1,
                                                                sentences_per_signer=1))
    done = _run(tmp_path, f"data.shards=[{tmp_path}/corpus/shards/*.tar]")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pretrain/run.py: error: text.name_or_path=/nonexistent/text-encoder" in done.stderr
