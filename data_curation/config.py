"""Typed config of ``slp-curate build`` (``configs/curate/*.yaml``).

Each entry of ``datasets`` is named by its mapping key, and that name is the dataset of every sample it gives
(the ``dataset`` field, the key prefix, the summary's rows); ``adapter`` names the reader of its annotations. Two
entries may share an adapter (two releases of Phoenix-2014-T, say) and still give distinct keys.

Enumerated fields are ``Literal`` types, so :func:`slp.config.load_config` refuses a value outside them when the
file is loaded; :func:`check_config` checks what types cannot say (ranges, files that must exist).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slp.cli_errors import UserError

PoseFormat = Literal["auto", "pose", "mmpose_json", "npy", "npz", "openpose_json", "pickle"]
Split = Literal["train", "dev", "test"]
TextLanguage = Literal["", "en", "de", "zh"]


@dataclass
class PoseSourceConfig:
    root: str  # folder (or file, for collection formats) holding the poses
    format: PoseFormat = "auto"  # auto: from each file's suffix
    allow_pickle: bool = False  # SLRT-style pickles are only read with this explicit opt-in
    # Used only where the pose files do not record them (.npy arrays, MMPose JSON, pickles) and the annotations
    # do not give them either: a value the file records wins (see slp.pose.readers).
    fps: float = 25.0
    width: int = 0  # 0 = unknown: a file that records no size is then rejected
    height: int = 0


@dataclass
class DatasetConfig:
    adapter: str  # registered adapter name: wlasl, msasl, nmfs_csl, slr500, phoenix14, phoenix14t, ...
    annotation_root: str
    poses: PoseSourceConfig
    splits: list[Split] = field(default_factory=lambda: ["train", "dev", "test"])
    exclude_splits: list[Split] = field(default_factory=list)  # e.g. downstream test splits
    text_language: TextLanguage = ""  # overrides the adapter's default text language when set
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


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UserError(f"{where}: {message}")


def _check_pose_source(source: PoseSourceConfig, where: str) -> None:
    formats = typing.get_args(PoseFormat)
    _check(source.format in formats, f"{where}.format", f"{source.format!r} is not one of {formats}")
    _check(0 < source.fps < math.inf, f"{where}.fps", f"must be a positive number, got {source.fps}")
    for name in ("width", "height"):
        _check(getattr(source, name) >= 0, f"{where}.{name}", f"must be >= 0 (0 = unknown), got "
               f"{getattr(source, name)}")
    _check(source.format != "pickle" or source.allow_pickle, f"{where}.allow_pickle", "format pickle reads pickles, "
           "which run code when loaded: set allow_pickle: true for a source you trust")
    root = Path(source.root)
    if source.format == "pickle":
        _check(root.is_file(), f"{where}.root", f"{root}: {'is a directory, not' if root.is_dir() else 'no such'} "
               f"collection file (format: pickle reads one file)")
    else:
        _check(root.exists(), f"{where}.root", f"{root}: no such folder")


def check_config(cfg: CurateConfig, source: str = "curate config") -> None:
    """Raise :class:`~slp.cli_errors.UserError` naming ``source`` and the option when a value is out of range,
    the output is a file, or a pose source does not exist (a typo would otherwise reject every record as a missing
    file)."""
    output = Path(cfg.output)
    _check(output.is_dir() or not output.exists(), f"{source}: output", f"{output}: is a file, not a folder")
    _check(cfg.records_per_shard >= 1, f"{source}: records_per_shard", f"must be >= 1, got {cfg.records_per_shard}")
    _check(cfg.workers >= 1, f"{source}: workers", f"must be >= 1, got {cfg.workers}")
    _check(cfg.min_frames >= 1, f"{source}: min_frames", f"must be >= 1, got {cfg.min_frames}")
    _check(cfg.max_frames == 0 or cfg.max_frames >= cfg.min_frames, f"{source}: max_frames",
           f"must be 0 (no limit) or >= min_frames ({cfg.min_frames}), got {cfg.max_frames}")
    splits = typing.get_args(Split)
    for name, dataset in cfg.datasets.items():
        where = f"{source}: datasets.{name}"
        for key in ("splits", "exclude_splits"):
            unknown = [s for s in getattr(dataset, key) if s not in splits]
            _check(not unknown, f"{where}.{key}", f"{unknown} not among {splits}")
        _check_pose_source(dataset.poses, f"{where}.poses")
        if dataset.extra_hands is not None:
            _check_pose_source(dataset.extra_hands, f"{where}.extra_hands")
