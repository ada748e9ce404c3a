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


# Noisy signers with frequent detector failures: raw pose statistics no longer separate the glosses, features
# that generalise across signers do. Shared by the linear-probe and fine-tuning tests.
PRETRAIN_CORPUS = dict(num_glosses=30, num_signers=10, dev_signers=1, test_signers=2, repetitions=2,
                       sentences_per_signer=10, shard_samples=100, noise=0.05, point_dropout=0.1, hand_dropout=0.15)


@pytest.fixture(scope="session")
def pretrained_tiny(tmp_path_factory, tiny_mbart_dir):
    """(corpus config, corpus dir, export dir): the `tiny` model pre-trained 400 steps on a synthetic corpus (train
    split), exported as pre-training exports it: the encoder and the sign-text alignment module."""
    import itertools

    import torch

    from pretrain.config import PretrainRunConfig
    from slp.config import load_config
    from slp.data.loader import PretrainDataConfig, pretrain_batches
    from slp.models.pretraining import PretrainingModel
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus
    from slp.text import FrozenTextEncoder

    corpus_cfg = SyntheticConfig(**PRETRAIN_CORPUS)
    out = tmp_path_factory.mktemp("pretrained_tiny")
    write_synthetic_corpus(out / "corpus", corpus_cfg)
    run = load_config(PretrainRunConfig, REPO_ROOT / "configs" / "pretrain" / "tiny.yaml")
    text_encoder = FrozenTextEncoder.from_pretrained(tiny_mbart_dir, 64)
    torch.manual_seed(0)
    model = PretrainingModel(run.model, run.loss)
    data = PretrainDataConfig(shards=[str(out / "corpus" / "shards" / "*.tar")], batch_size=16, max_frames=64,
                              max_text_tokens=64, shuffle_buffer=100, bucket_batches=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    model.train()
    for batch in itertools.islice(pretrain_batches(data, text_encoder.text_tokenizer), 400):
        text = text_encoder(batch.input_ids, batch.text_mask)
        loss = model(batch.pose, batch.frame_mask, batch.joint_mask, text, batch.text_mask, batch.paired)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return corpus_cfg, out / "corpus", model.save_pretrained(out / "encoder", text_model=str(tiny_mbart_dir))
