"""Pre-training helps: a linear probe on pooled features of the pre-trained tiny encoder beats the same probe
on a randomly initialised encoder, on held-out synthetic signers."""

from __future__ import annotations

import pytest
import torch

from finetune.data import collate_poses
from finetune.linear_probe import linear_probe, pooled_features, probe_accuracy
from pretrain.config import PretrainRunConfig
from slp.config import load_config
from slp.models.pretraining import PretrainingModel
from slp.models.sign_encoder import SignPoseEncoder
from slp.synthetic import SyntheticConfig, generate_isolated
from tests.margins import LEARNING_SEED, assert_margin

PROBE_SIGNERS = ("signer000", "signer001")


@pytest.mark.learning
@pytest.mark.slow
def test_pretrained_encoder_beats_random_init_under_a_linear_probe(pretrained_tiny):
    """Measured over seeds 0-4 on 1 thread (benchmarks/learning_margins.py), top-1 pre-trained minus random init:
    +0.17 / +0.02 / +0.25 / +0.26 / +0.44 (mean 0.23 ± 0.15); the check asks for more than 0. On 2 threads (an earlier
    run) seeds 0 and 2 passed and seed 1 gave -0.06: a probe fitted on two signers is a fragile witness, and this
    margin holds for the pinned count only."""
    corpus_cfg, _, encoder_dir = pretrained_tiny
    run = load_config(PretrainRunConfig, "configs/pretrain/tiny.yaml")
    torch.manual_seed(LEARNING_SEED)
    random_encoder = PretrainingModel(run.model, run.loss).encoder
    samples = list(generate_isolated(corpus_cfg))
    # A probe fitted on two signers only: features must generalise across signers.
    train = [s for s in samples if s.meta.signer in PROBE_SIGNERS]
    test = [s for s in samples if s.meta.split == "test"]
    pretrained = linear_probe(SignPoseEncoder.from_pretrained(encoder_dir), train, test, corpus_cfg.num_glosses)
    scratch = linear_probe(random_encoder, train, test, corpus_cfg.num_glosses)
    print(f"linear probe on held-out signers: pre-trained {pretrained:.3f}, random init {scratch:.3f}")
    assert_margin("linear probe top-1: pre-trained vs random init", pretrained, scratch)


class _Echo(torch.nn.Module):
    """An 'encoder' whose features are the frame index and the first point's x: pooling can be checked by hand."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Linear(1, 1)

    def forward(self, pose, frame_mask):
        index = torch.arange(pose.shape[1], dtype=torch.float32)[None, :, None].expand(pose.shape[0], -1, 1)
        return torch.cat([index, pose[:, :, :1, 0]], dim=-1) * frame_mask[..., None]


def test_pooled_features_average_equal_stretches_of_the_evaluation_frames():
    samples = list(generate_isolated(SyntheticConfig(num_glosses=2, num_signers=4, repetitions=1)))[:3]
    features = pooled_features(_Echo(), samples, segments=2, num_frames=8)
    assert features.shape == (3, 4)
    # 8 evaluation frames: indices 0..7, halves 0-3 and 4-7.
    assert torch.allclose(features[:, 0], torch.full((3,), 1.5))
    assert torch.allclose(features[:, 2], torch.full((3,), 5.5))
    pose, _ = collate_poses(samples, 8, train=False)
    assert torch.allclose(features[:, 1], pose[:, :4, 0, 0].mean(1))
    assert torch.allclose(features[:, 3], pose[:, 4:, 0, 0].mean(1))


def test_probe_separates_separable_features_and_not_random_labels():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=generator) * 3
    labels = torch.arange(200) % 5
    features = centres[labels] + torch.randn(200, 16, generator=generator)
    assert probe_accuracy(features[:150], labels[:150], features[150:], labels[150:], 5) == 1.0
    shuffled = labels[torch.randperm(200, generator=generator)]
    assert probe_accuracy(features[:150], shuffled[:150], features[150:], shuffled[150:], 5) < 0.45
