"""Isolated sign recognition head: SignPoseEncoder + one linear layer over the mean of valid frames."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from finetune.data import collate_poses
from slp.data.schema import Sample
from slp.metrics import islr_accuracy
from slp.models.sign_encoder import SignPoseEncoder

MAIN_METRIC = "per_instance_top1"


class ISLRHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, num_classes: int, label_smoothing: float = 0.2):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.output_dim, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        features = self.encoder(pose, frame_mask)
        pooled = features.sum(dim=1) / frame_mask.sum(dim=1, keepdim=True).clamp(min=1)
        return self.classifier(pooled)

    def loss(self, samples: list[Sample], num_frames: int, rng: np.random.Generator) -> torch.Tensor:
        pose, mask = collate_poses(samples, num_frames, True, rng)
        labels = torch.tensor([s.meta.label for s in samples], device=pose.device)
        device = next(self.parameters()).device
        return F.cross_entropy(self(pose.to(device), mask.to(device)), labels.to(device),
                               label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def evaluate(self, samples: list[Sample], num_frames: int, batch_size: int) -> dict[str, float]:
        rng = np.random.default_rng(0)  # unused in evaluation: frames are centred
        device = next(self.parameters()).device
        scores = []
        for start in range(0, len(samples), batch_size):
            pose, mask = collate_poses(samples[start : start + batch_size], num_frames, False, rng)
            scores.append(self(pose.to(device), mask.to(device)).float().cpu())
        return islr_accuracy(torch.cat(scores), [s.meta.label for s in samples])


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's ISLR tables."""
    head = f"{'split':<6} {'P-I Top-1':>10} {'P-I Top-5':>10} {'P-C Top-1':>10} {'P-C Top-5':>10}"
    rows = [f"{name:<6} {m['per_instance_top1']:>10.2f} {m['per_instance_top5']:>10.2f} "
            f"{m['per_class_top1']:>10.2f} {m['per_class_top5']:>10.2f}" for name, m in (("dev", dev), ("test", test))]
    return "\n".join([head, *rows])
