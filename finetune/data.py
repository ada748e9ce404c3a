"""Fine-tuning data: the samples of one dataset and split, loaded from curated shards into memory.

Downstream sets are small (tens of thousands of clips of a few dozen frames), so a split is read once with the
validating shard reader and kept as arrays; batches are sampled and normalised with tensor ops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from slp.data.loader import expand_shards
from slp.data.schema import Sample
from slp.data.shards import ReadStats, iter_samples
from slp.pose.normalize import normalize_pose


def load_split(patterns: list[str], dataset: str, split: str, keep: Callable[[Sample], bool] | None = None,
               labels: list[int] | None = None) -> list[Sample]:
    """Samples of ``dataset`` / ``split`` in shard order that ``keep`` accepts (a task's filter: labelled
    clips for ISLR, gloss sequences for CSLR…); ``labels`` keeps a vocabulary subset of labelled clips."""
    wanted = set(labels or [])
    stats = ReadStats()
    samples = [
        s for s in iter_samples(expand_shards(patterns), stats)
        if (not dataset or s.meta.dataset == dataset) and s.meta.split == split
        and (keep is None or keep(s)) and (not wanted or s.meta.label in wanted)
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
    return _pad([s.pose[p] for s, p in zip(samples, picks)])


def collate_sequences(samples: list[Sample], max_frames: int):
    """Whole clips as normalised ``(B, T, 79, 3)`` poses and a ``(B, T)`` frame mask, ``T`` = the longest clip.

    Clips longer than ``max_frames`` are evenly subsampled to ``max_frames`` frames (continuous signing keeps
    every sign, at a lower frame rate), so sequence tasks (CSLR, SLT, retrieval) never lose the end of a clip.
    """
    picks = [np.arange(len(s.pose)) if len(s.pose) <= max_frames
             else np.linspace(0, len(s.pose) - 1, max_frames).round().astype(int) for s in samples]
    return _pad([s.pose[p] for s, p in zip(samples, picks)])


def _pad(clips: list[np.ndarray]):
    t = max(len(c) for c in clips)
    pose = np.zeros((len(clips), t, 79, 3), dtype=np.float32)
    for i, c in enumerate(clips):
        pose[i, : len(c)] = c
    mask = torch.arange(t)[None, :] < torch.tensor([len(c) for c in clips])[:, None]
    return normalize_pose(torch.from_numpy(pose)), mask
