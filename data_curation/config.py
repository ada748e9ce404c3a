"""Typed config of ``slp-curate build`` (``configs/curate/*.yaml``).

Each entry of ``datasets`` is named by its mapping key, and that name is the dataset of every sample it gives
(the ``dataset`` field, the key prefix, the summary's rows); ``adapter`` names the reader of its annotations. Two
entries may share an adapter (two releases of Phoenix-2014-T, say) and still give distinct keys. An entry with
``enabled: false`` is left out of the build as if it were not there.

Enumerated fields are ``Literal`` types, so :func:`slp.config.load_config` refuses a value outside them when the
file is loaded; :func:`check_config` holds a config built in code to the same types, and checks what types cannot
say (ranges, files and folders that must exist).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from slp.cli_errors import UserError, file_problem, folder_problem
from slp.config import ConfigError, from_dict, to_dict
from slp.data.schema import SPLITS

PoseFormat = Literal["auto", "pose", "mmpose_json", "npy", "npz", "openpose_json", "asl_signs_parquet", "pickle"]
Split = Literal["train", "dev", "test"]  # a Literal for load_config and type checkers: the shard schema's SPLITS
if typing.get_args(Split) != SPLITS:
    raise AssertionError(f"config Split {typing.get_args(Split)} differs from the shard schema's SPLITS {SPLITS}")
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
    # false: the entry is skipped (its roots not checked, its adapter not opened), so a config can list a source
    # that only some labs have (datasets.<name>.enabled=true turns it on)
    enabled: bool = True


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
    _check(0 < source.fps < math.inf, f"{where}.fps", f"must be a positive number, got {source.fps}")
    for name in ("width", "height"):
        _check(getattr(source, name) >= 0, f"{where}.{name}", f"must be >= 0 (0 = unknown), got "
               f"{getattr(source, name)}")
    _check(source.format != "pickle" or source.allow_pickle, f"{where}.allow_pickle", "format pickle reads pickles, "
           "which run code when loaded: set allow_pickle: true for a source you trust")
    if source.format == "pickle":
        problem = file_problem(source.root)
        _check(problem is None, f"{where}.root", f"{source.root}: {problem} (format: pickle reads one collection "
               f"file)")
    else:
        problem = folder_problem(source.root)
        _check(problem is None, f"{where}.root", f"{source.root}: {problem}")


def check_config(cfg: CurateConfig, source: str = "curate config") -> None:
    """Raise :class:`~slp.cli_errors.UserError` naming ``source`` and the option when a value breaks its type (a
    config built in code has not been through :func:`slp.config.load_config`) or is out of range, the output is a
    file, or an annotation root or pose source does not exist (a typo would otherwise reject every record as a
    missing file)."""
    try:
        from_dict(CurateConfig, to_dict(cfg), source)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    problem = folder_problem(cfg.output)
    _check(problem in (None, "no such folder"), f"{source}: output", f"{cfg.output}: {problem}")
    _check(cfg.records_per_shard >= 1, f"{source}: records_per_shard", f"must be >= 1, got {cfg.records_per_shard}")
    _check(cfg.workers >= 1, f"{source}: workers", f"must be >= 1, got {cfg.workers}")
    _check(cfg.min_frames >= 1, f"{source}: min_frames", f"must be >= 1, got {cfg.min_frames}")
    _check(cfg.max_frames == 0 or cfg.max_frames >= cfg.min_frames, f"{source}: max_frames",
           f"must be 0 (no limit) or >= min_frames ({cfg.min_frames}), got {cfg.max_frames}")
    for name, dataset in cfg.datasets.items():
        if not dataset.enabled:
            continue
        where = f"{source}: datasets.{name}"
        problem = folder_problem(dataset.annotation_root)
        _check(problem is None, f"{where}.annotation_root", f"{dataset.annotation_root}: {problem}")
        _check_pose_source(dataset.poses, f"{where}.poses")
        if dataset.extra_hands is not None:
            _check_pose_source(dataset.extra_hands, f"{where}.extra_hands")
