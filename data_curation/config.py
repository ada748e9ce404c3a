"""Typed config of ``slp-curate build`` (``configs/curate/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PoseSourceConfig:
    root: str  # folder (or file, for collection formats) holding the poses
    format: str = "auto"  # auto, pose, mmpose_json, npy, npz, pickle
    allow_pickle: bool = False  # SLRT-style pickles are only read with this explicit opt-in
    # Used where the pose files do not carry them (plain .npy arrays, pickles).
    fps: float = 25.0
    width: int = 0
    height: int = 0


@dataclass
class DatasetConfig:
    adapter: str  # registered adapter name: wlasl, msasl, nmfs_csl, slr500, phoenix14, phoenix14t, ...
    annotation_root: str
    poses: PoseSourceConfig
    splits: list[str] = field(default_factory=lambda: ["train", "dev", "test"])
    exclude_splits: list[str] = field(default_factory=list)  # e.g. downstream test splits
    text_language: str = ""  # overrides the adapter's default text language when set
    extra_hands: PoseSourceConfig | None = None  # second hand-pose source (InterWild-style), optional
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific (vocabulary file, subset…)


@dataclass
class CurateConfig:
    output: str
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    records_per_shard: int = 1000  # input records per shard: fixed, so shard contents do not depend on workers
    workers: int = 1
    min_frames: int = 4
    max_frames: int = 0  # 0 = no limit; longer clips are kept whole (the loader crops)
    seed: int = 0
