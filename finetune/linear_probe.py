"""A linear probe of a frozen pose encoder on isolated signs: what its features hold, without fine-tuning.

Each clip is collated as ISLR evaluation collates it (``num_frames`` frames, the middle of each of as many equal
segments, normalised with its own frame size: :func:`finetune.data.collate_poses`), so the probe sees what a
fine-tuned head sees and no more (not the clip's duration, say). The encoder's features are averaged over
``segments`` equal stretches of those frames and concatenated (1: the clip's mean; more keep the order of the
movements, which a single mean throws away). A softmax classifier is fitted on standardised features of the
training samples by full-batch Adam and scored on the others.
"""

from __future__ import annotations

import torch
from torch import nn

from finetune.data import collate_poses
from slp.data.schema import Sample


@torch.no_grad()
def pooled_features(encoder: nn.Module, samples: list[Sample], segments: int = 1, num_frames: int = 32,
                    batch_size: int = 64) -> torch.Tensor:
    """``(N, segments · D)``: each clip's ``num_frames`` evaluation frames encoded, then averaged over ``segments``
    equal stretches of them."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(samples), batch_size):
        pose, frame_mask = collate_poses(samples[start:start + batch_size], num_frames, train=False)
        features = encoder(pose.to(device), frame_mask.to(device)).float().cpu()
        for row, n in zip(features, frame_mask.sum(1).tolist()):
            bounds = torch.linspace(0, n, segments + 1).round().long().tolist()
            out.append(torch.cat([row[a:max(b, a + 1)].mean(0) for a, b in zip(bounds, bounds[1:])]))
    return torch.stack(out)


def probe_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                   test_labels: torch.Tensor, num_classes: int, steps: int = 300, seed: int = 0) -> float:
    """Top-1 accuracy on the test features of a linear classifier fitted on the training features."""
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    probe = nn.Linear(xtr.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) / xtr.shape[1] ** 0.5)
        probe.bias.zero_()
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    with torch.enable_grad():
        for _ in range(steps):
            loss = nn.functional.cross_entropy(probe(xtr), train_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return (probe(xte).argmax(-1) == test_labels).float().mean().item()


def linear_probe(encoder: nn.Module, train: list[Sample], test: list[Sample], num_classes: int, segments: int = 1,
                 seed: int = 0) -> float:
    """Top-1 on ``test`` of a linear probe fitted on ``train`` (samples with ``meta.label``)."""
    labels = [torch.tensor([s.meta.label for s in part]) for part in (train, test)]
    return probe_accuracy(pooled_features(encoder, train, segments), labels[0],
                          pooled_features(encoder, test, segments), labels[1], num_classes, seed=seed)
