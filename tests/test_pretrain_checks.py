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


def test_epochs_become_steps_from_the_manifest_beside_the_shards(tmp_path):
    import pyarrow.parquet as pq

    from pretrain.config import PretrainRunConfig
    from pretrain.trainer import count_samples, total_steps
    from slp.data.loader import PretrainDataConfig
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "corpus", SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1,
                                                                sentences_per_signer=1, shard_samples=5))
    shards = sorted(str(p) for p in (tmp_path / "corpus" / "shards").glob("*.tar"))
    rows = pq.read_table(tmp_path / "corpus" / "manifest.parquet").num_rows
    assert count_samples(shards) == rows and count_samples(shards[:1]) == 5  # only the shards asked for
    cfg = PretrainRunConfig(data=PretrainDataConfig(shards=[f"{tmp_path}/corpus/shards/*.tar"], batch_size=4))
    cfg.optim.epochs = 2.0
    assert total_steps(cfg, world_size=2) == -(-2 * rows // 8)  # global batch 4 × 2 ranks


def test_the_encoder_card_counts_what_this_run_reads(tmp_path):
    import pyarrow.parquet as pq

    from pretrain.config import PretrainRunConfig
    from pretrain.trainer import encoder_card
    from slp.data.loader import PretrainDataConfig
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "corpus", SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1,
                                                                sentences_per_signer=1))
    rows = pq.read_table(tmp_path / "corpus" / "manifest.parquet").to_pylist()
    cfg = PretrainRunConfig(data=PretrainDataConfig(shards=[f"{tmp_path}/corpus/shards/*.tar"], splits=["train"]))
    card = encoder_card(cfg)
    assert card["training_data"]["counts"] == {"synthetic": sum(r["split"] == "train" for r in rows)}
    assert len(card["training_data"]["manifest_sha256"]) == 64
    cfg.data.exclude = ["synthetic/train"]  # an excluded split is not counted
    assert encoder_card(cfg)["training_data"]["counts"] == {}
