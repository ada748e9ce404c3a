"""Fine-tuning data: the samples of one dataset and split, loaded from curated shards into memory, and the pose
side of the heads' collators.

Downstream sets are small (tens of thousands of clips of a few dozen frames), so a split is read once with the
validating shard reader and kept as arrays; each head's collator turns a list of samples into tensors (in the
training DataLoader's workers), picking and normalising frames with tensor ops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from slp.cli_errors import UserError
from slp.data.schema import Sample
from slp.data.shards import ReadStats, iter_samples, shards_holding
from slp.pose.normalize import normalize_pose


def load_split(patterns: list[str], dataset: str, split: str, keep: Callable[[Sample], bool] | None = None,
               labels: list[int] | None = None, stats: ReadStats | None = None) -> list[Sample]:
    """Samples of ``dataset`` / ``split`` in shard order that ``keep`` accepts (a task's filter: labelled
    clips for ISLR, gloss sequences for CSLR…); ``labels`` keeps a vocabulary subset of labelled clips.

    Only the shards that hold the split by the build's manifest are read (all of them without a manifest): a
    downstream set is a sliver of a pre-training build. ``stats`` counts what the read did (bytes included)."""
    wanted = set(labels or [])
    stats = stats if stats is not None else ReadStats()
    samples = [
        s for s in iter_samples(shards_holding(patterns, dataset, split), stats)
        if (not dataset or s.meta.dataset == dataset) and s.meta.split == split
        and (keep is None or keep(s)) and (not wanted or s.meta.label in wanted)
    ]
    if not samples:
        raise UserError(f"data.shards={patterns}: no {split} samples of dataset {dataset or '(any)'} for this task")
    return samples


def sample_frames(length: int, num: int, train: bool) -> torch.Tensor:
    """Indices of ``num`` frames, one per segment: the clip is cut into ``num`` equal segments (frame i lies in
    segment ``i · num // length``) and frame k is drawn uniformly inside segment k in training (from torch's RNG),
    the segment's middle frame otherwise (the lower one of an even count).

    Training and evaluation thus see the clip at the same time scale, as pose ISLR codebases sample it; clips of
    at most ``num`` frames keep all their frames (the batch pads them).
    """
    if length <= num:
        return torch.arange(length)
    edges = (torch.arange(num + 1) * length + num - 1) // num  # first frame of each segment: ⌈k · length / num⌉
    starts, sizes = edges[:-1], edges[1:] - edges[:-1]  # every size ≥ 1 as length > num
    if train:  # float64: u · size stays below size for any clip length
        return starts + (torch.rand(num, dtype=torch.float64) * sizes).long()
    return starts + (sizes - 1) // 2


def collate_poses(samples: list[Sample], num_frames: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(B, T, 79, 3)`` poses and ``(B, T)`` frame mask, ``T = min(num_frames, longest clip)``."""
    return _pad([s.pose[sample_frames(len(s.pose), num_frames, train).numpy()] for s in samples], samples)


def collate_sequences(samples: list[Sample], max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole clips as normalised ``(B, T, 79, 3)`` poses and a ``(B, T)`` frame mask, ``T`` = the longest clip.

    Clips longer than ``max_frames`` are evenly subsampled to ``max_frames`` frames (continuous signing keeps
    every sign, at a lower frame rate), so sequence tasks (CSLR, SLT, retrieval) never lose the end of a clip.
    """
    picks = [np.arange(len(s.pose)) if len(s.pose) <= max_frames
             else np.linspace(0, len(s.pose) - 1, max_frames).round().astype(int) for s in samples]
    return _pad([s.pose[p] for s, p in zip(samples, picks)], samples)


def _pad(clips: list[np.ndarray], samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(c) for c in clips)
    pose = np.zeros((len(clips), t, 79, 3), dtype=np.float32)
    for i, c in enumerate(clips):
        pose[i, : len(c)] = c
    mask = torch.arange(t)[None, :] < torch.tensor([len(c) for c in clips])[:, None]
    frame_size = torch.tensor([[s.meta.width, s.meta.height] for s in samples], dtype=torch.float32)
    return normalize_pose(torch.from_numpy(pose), frame_size), mask
