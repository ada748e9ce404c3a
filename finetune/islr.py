"""Isolated sign recognition head: SignPoseEncoder + one linear layer over the mean of valid frames.

32 frames per clip (random in training, centred in evaluation), cross-entropy with label smoothing 0.2;
metrics are per-instance and per-class top-1 / top-5 (paper Table III and Tables IV-VII).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from finetune.config import FinetuneConfig
from finetune.data import collate_poses
from slp.data.schema import Sample
from slp.metrics import islr_accuracy
from slp.models.sign_encoder import SignPoseEncoder

MAIN_METRIC = "per_instance_top1"
HIGHER_IS_BETTER = True


def keep(sample: Sample) -> bool:
    return sample.meta.label >= 0


class ISLRHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, num_classes: int, num_frames: int = 32,
                 label_smoothing: float = 0.2):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.output_dim, num_classes)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.label_smoothing = label_smoothing

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def logits(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        features = self.encoder(pose.to(self.device), frame_mask.to(self.device))
        pooled = features.sum(dim=1) / frame_mask.to(self.device).sum(dim=1, keepdim=True).clamp(min=1)  # padding is 0
        return self.classifier(pooled)

    def forward(self, samples: list[Sample], rng: np.random.Generator) -> torch.Tensor:
        """Training loss of a batch of samples."""
        pose, mask = collate_poses(samples, self.num_frames, True, rng)
        labels = torch.tensor([s.meta.label for s in samples], device=self.device)
        return F.cross_entropy(self.logits(pose, mask), labels, label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def evaluate(self, samples: list[Sample], batch_size: int) -> dict[str, float]:
        rng = np.random.default_rng(0)  # unused in evaluation: frames are centred
        scores = []
        for start in range(0, len(samples), batch_size):
            pose, mask = collate_poses(samples[start : start + batch_size], self.num_frames, False, rng)
            scores.append(self.logits(pose, mask).float().cpu())
        return islr_accuracy(torch.cat(scores), [s.meta.label for s in samples])

    def head_state(self) -> dict:
        return {"num_classes": self.num_classes}


def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> ISLRHead:
    if state is not None:
        num_classes = state["num_classes"]
    elif cfg.islr.num_classes:
        num_classes = cfg.islr.num_classes
    elif train:
        num_classes = 1 + max(s.meta.label for s in train)
    else:
        raise ValueError("islr: set islr.num_classes (no training split and no head.json beside the checkpoint)")
    return ISLRHead(encoder, num_classes, cfg.data.num_frames, cfg.islr.label_smoothing)


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's ISLR tables."""
    head = f"{'split':<6} {'P-I Top-1':>10} {'P-I Top-5':>10} {'P-C Top-1':>10} {'P-C Top-5':>10}"
    rows = [f"{name:<6} {m['per_instance_top1']:>10.2f} {m['per_instance_top5']:>10.2f} "
            f"{m['per_class_top1']:>10.2f} {m['per_class_top5']:>10.2f}" for name, m in (("dev", dev), ("test", test))]
    return "\n".join([head, *rows])
