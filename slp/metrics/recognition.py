"""Isolated sign recognition accuracy: per-instance and per-class top-k (papers' Tables IV-VII)."""

from __future__ import annotations

import numpy as np
import torch


def islr_accuracy(scores, labels, topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Per-instance and per-class top-k accuracy in percent.

    Per-class accuracy averages the accuracy of each class present in ``labels``; classes absent from the
    evaluated set are skipped, as the field does (WLASL, MS-ASL subsets). ``k`` larger than the number of
    classes is clamped.
    """
    scores = torch.as_tensor(np.asarray(scores) if not torch.is_tensor(scores) else scores).float()
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} do not match")
    ranked = scores.argsort(dim=1, descending=True)
    classes = labels.unique()
    out: dict[str, float] = {"num_instances": int(labels.numel()), "num_classes_scored": int(classes.numel())}
    for k in topk:
        hit = (ranked[:, : min(k, scores.shape[1])] == labels[:, None]).any(dim=1).float()
        out[f"per_instance_top{k}"] = 100.0 * hit.mean().item()
        out[f"per_class_top{k}"] = 100.0 * torch.stack([hit[labels == c].mean() for c in classes]).mean().item()
    return out
