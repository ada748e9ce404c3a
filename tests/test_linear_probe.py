"""Pre-training helps: a linear probe on pooled features of the pre-trained tiny encoder beats the same probe
on a randomly initialised encoder, on held-out synthetic signers."""

from __future__ import annotations

import pytest
import torch

from pretrain.config import PretrainRunConfig
from slp.config import load_config
from slp.models.pretraining import PretrainingModel
from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.normalize import normalize_pose
from slp.synthetic import generate_isolated

pytestmark = pytest.mark.slow
PROBE_SIGNERS = ("signer000", "signer001")


def _pooled_features(encoder, samples) -> torch.Tensor:
    encoder.eval()
    feats = []
    with torch.no_grad():
        for s in samples:
            pose = normalize_pose(torch.from_numpy(s.pose[None, :64].astype("float32")),
                                  torch.tensor([[s.meta.width, s.meta.height]]))
            out = encoder(pose, torch.ones(pose.shape[:2], dtype=torch.bool))
            feats.append(out.mean(dim=1)[0])
    return torch.stack(feats)


def _probe_accuracy(encoder, train, test, num_classes) -> float:
    xtr, xte = _pooled_features(encoder, train), _pooled_features(encoder, test)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr = torch.tensor([s.meta.label for s in train])
    yte = torch.tensor([s.meta.label for s in test])
    torch.manual_seed(0)
    probe = torch.nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(probe(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (probe(xte).argmax(-1) == yte).float().mean().item()


def test_pretrained_encoder_beats_random_init_under_a_linear_probe(pretrained_tiny):
    corpus_cfg, _, encoder_dir = pretrained_tiny
    run = load_config(PretrainRunConfig, "configs/pretrain/tiny.yaml")
    torch.manual_seed(0)
    random_encoder = PretrainingModel(run.model, run.loss).encoder
    samples = list(generate_isolated(corpus_cfg))
    # A probe fitted on two signers only: features must generalise across signers.
    train = [s for s in samples if s.meta.signer in PROBE_SIGNERS]
    test = [s for s in samples if s.meta.split == "test"]
    pretrained = _probe_accuracy(SignPoseEncoder.from_pretrained(encoder_dir), train, test, corpus_cfg.num_glosses)
    scratch = _probe_accuracy(random_encoder, train, test, corpus_cfg.num_glosses)
    print(f"linear probe on held-out signers: pre-trained {pretrained:.3f}, random init {scratch:.3f}")
    assert pretrained > scratch
