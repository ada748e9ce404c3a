"""Fine-tuning data: the samples of one dataset and split, loaded from curated shards into memory.

Downstream sets are small (tens of thousands of clips of a few dozen frames), so a split is read once with the
validating shard reader and kept as arrays; batches are sampled and normalised with tensor ops.
"""

from __future__ import annotations

import numpy as np
import torch

from slp.data.loader import expand_shards
from slp.data.schema import Sample
from slp.data.shards import ReadStats, iter_samples
from slp.pose.normalize import normalize_pose


def load_split(patterns: list[str], dataset: str, split: str, labels: list[int] | None = None,
               labelled: bool = False) -> list[Sample]:
    """Samples of ``dataset`` / ``split`` in shard order; ``labelled`` keeps class-labelled clips (ISLR) only,
    ``labels`` a vocabulary subset of them."""
    wanted = set(labels or [])
    stats = ReadStats()
    samples = [
        s for s in iter_samples(expand_shards(patterns), stats)
        if (not dataset or s.meta.dataset == dataset) and s.meta.split == split
        and (not labelled or s.meta.label >= 0) and (not wanted or s.meta.label in wanted)
    ]
    if not samples:
        raise ValueError(f"no samples of dataset {dataset or '(any)'} split {split} in {patterns}")
    return samples


def sample_frames(length: int, num: int, train: bool, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``num`` frames: sorted random frames in training, an evenly spaced centred window otherwise.

    Clips shorter than ``num`` keep all their frames (the batch pads them).
    """
    if length <= num:
        return np.arange(length)
    if train:
        return np.sort(rng.choice(length, num, replace=False))
    start = (length - num) // 2
    return np.arange(start, start + num)


def collate_poses(samples: list[Sample], num_frames: int, train: bool, rng: np.random.Generator):
    """Normalised ``(B, T, 79, 3)`` poses and ``(B, T)`` frame mask, ``T = min(num_frames, longest clip)``."""
    picks = [sample_frames(len(s.pose), num_frames, train, rng) for s in samples]
    t = max(len(p) for p in picks)
    pose = np.zeros((len(samples), t, 79, 3), dtype=np.float32)
    for i, (s, p) in enumerate(zip(samples, picks)):
        pose[i, : len(p)] = s.pose[p]
    mask = torch.arange(t)[None, :] < torch.tensor([len(p) for p in picks])[:, None]
    return normalize_pose(torch.from_numpy(pose)), mask
