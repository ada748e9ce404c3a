"""The curation pipeline: adapter records → validated pose clips → WebDataset shards, manifest and rejects.

Layout of a build's output folder::

    shards/sl15m-{i:06d}.tar      the samples of job i (no file when every record of the job was rejected)
    parts/sl15m-{i:06d}.json      job i's sidecar: input fingerprint, manifest rows, reject rows
    manifest.parquet              one row per sample, in input order (the sidecars merged)
    rejects.parquet               one row per rejected record, with its reason and detail
    summary.json                  counts per dataset / split / sign language, rejects by reason, reconciliation

Scaling rules, each a design decision:

- *Streaming*: datasets are read in config order, each adapter's records lazily, and cut into jobs of
  ``records_per_shard`` consecutive input records (adapter rejects included, so they land in the job's sidecar).
  At most ``2 × workers`` jobs are in flight, so memory does not grow with the number of records.
- *Deterministic*: a job's output depends only on its records and the settings, never on the worker that ran
  it, timestamps or the output path; shards are written with fixed tar metadata (:func:`slp.data.shards.write_shard`).
  Any worker count therefore gives byte-identical shards, manifest and rejects.
- *Atomic and resumable*: a job writes its shard (temporary name, then rename) and then its sidecar the same
  way; the sidecar is the "done" marker. A rerun skips a job whose sidecar holds the same input fingerprint
  (a hash of its records and of the settings that shape its output) and whose shard exists; anything else is
  redone. Temporary files of a killed run are removed at start, and shards / sidecars of job indices beyond the
  current run (left by an earlier, larger input) at the end.

Per-record checks, in order (reject reasons in brackets): the adapter's own rejects (their reason);
the pose file exists [``missing_pose_file``] and reads [``unreadable_pose``]; the extra-hand file, when the
record has one, exists [``missing_extra_hand_file``] and reads [``unreadable_extra_hands``]; the frame range
lies in the sequence [``frame_range_outside``] and is not empty [``empty_clip``]; at least ``min_frames`` frames
[``too_few_frames``] and, when ``max_frames`` > 0, at most that many [``too_many_frames``]; the 79 shard points
are finite [``non_finite_values``]; a paired record's text is not empty [``empty_text``] and holds no
replacement or control characters [``undecodable_text``]; its key is new in the job [``duplicate_key``; keys
are only compared within a job — adapters build them from dataset, split and source id, which are unique]. An
unexpected exception on one record is logged with its traceback and the record rejected
[``processing_error``], so one odd file does not stop a long build.

Non-finite values: the readers already turn a NaN / inf point into a missing point (confidence 0) — that is
how detectors mark failures, so it is repaired, not rejected. What remains non-finite is a coordinate beyond
float16's range once divided by the frame size (a corrupt file or a wrong frame size): that clip is rejected.

Time ranges (subtitle cues) become frames as ``round(t × fps)`` (half up), end exclusive; a cue ending at most
one frame past the sequence (rounding) is clipped to its end, anything further is ``frame_range_outside``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import unicodedata
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.records import AnnotationReject, CurationRecord
from slp.data.schema import InvalidSample, Sample, SampleMeta, make_key, validate_pose
from slp.data.shards import (
    MANIFEST_SCHEMA,
    manifest_row,
    write_parquet_rows,
    write_shard,
    write_summary,
)
from slp.pose.layout import NUM_WHOLEBODY_POINTS
from slp.pose.readers import (
    PoseFormatError,
    PoseSequence,
    clean_keypoints,
    format_for_path,
    read_pickle_collection,
    read_pose,
    to_shard_pose,
)

logger = logging.getLogger(__name__)

SHARD_PREFIX = "sl15m"
#: Bumped when the per-record processing changes, so a resumed build redoes jobs made by older code.
PIPELINE_VERSION = 1

#: The manifest of a curated build: the shard manifest plus the text (for Table II's unique sentences).
CURATED_MANIFEST_SCHEMA = MANIFEST_SCHEMA.append(pa.field("text", pa.string()))
REJECTS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("source_id", pa.string()),
        ("key", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("pose_path", pa.string()),
    ]
)

Item = tuple[str, CurationRecord | AnnotationReject]  # (dataset name in the config, what its adapter yielded)


@dataclass
class ProcessSettings:
    """What shapes a job's output besides its records (part of the resume fingerprint)."""

    datasets: dict[str, DatasetConfig]
    min_frames: int
    max_frames: int


@dataclass
class Job:
    index: int
    items: list[Item]
    fingerprint: str


class RecordRejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}-{index:06d}.tar"


def sidecar_name(index: int) -> str:
    return f"{SHARD_PREFIX}-{index:06d}.json"


# ---------------------------------------------------------------------------------------------------------- records


def iter_config_records(cfg: CurateConfig) -> Iterator[Item]:
    """Every dataset's adapter records, in config order, lazily."""
    from data_curation.adapters import get_adapter

    for name, dataset in cfg.datasets.items():
        adapter = get_adapter(dataset.adapter)(dataset, name)
        for item in adapter.records():
            yield name, item


def _fingerprint(items: list[Item], settings: ProcessSettings) -> str:
    used = sorted({name for name, _ in items})
    payload = {
        "version": PIPELINE_VERSION,
        "min_frames": settings.min_frames,
        "max_frames": settings.max_frames,
        "datasets": {name: dataclasses.asdict(settings.datasets[name]) for name in used},
        "items": [[name, type(item).__name__, dataclasses.asdict(item)] for name, item in items],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def make_jobs(items: Iterable[Item], settings: ProcessSettings, records_per_shard: int) -> Iterator[Job]:
    """Cut the record stream into jobs of ``records_per_shard`` consecutive items, lazily."""
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be positive, got {records_per_shard}")
    batch: list[Item] = []
    index = 0
    for item in items:
        batch.append(item)
        if len(batch) == records_per_shard:
            yield Job(index, batch, _fingerprint(batch, settings))
            index, batch = index + 1, []
    if batch:
        yield Job(index, batch, _fingerprint(batch, settings))


# ---------------------------------------------------------------------------------------------- one record → sample


def _resolve(root: str, path: str) -> Path:
    if not path:  # collection formats: the root is the file
        return Path(root)
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


@lru_cache(maxsize=2)
def _pickle_collection(path: str, allow_pickle: bool) -> dict[str, np.ndarray]:
    """A worker unpickles each SLRT collection once, not once per clip (records of one file come together)."""
    return read_pickle_collection(path, allow_pickle=allow_pickle)


def _collection_sequence(path: Path, key: str | None, source: PoseSourceConfig) -> PoseSequence:
    """Sequence ``key`` of a pickle collection, with the readers' missing-point rule and the config's fps / size."""
    collection = _pickle_collection(str(path), source.allow_pickle)
    if key not in collection:
        raise PoseFormatError(f"{path}: no sequence named {key!r}")
    array = np.asarray(collection[key])
    if array.ndim != 3 or array.shape[1:] != (NUM_WHOLEBODY_POINTS, 3):
        raise PoseFormatError(f"{path}:{key}: array of shape {array.shape} is not (T, {NUM_WHOLEBODY_POINTS}, 3)")
    if source.width <= 0 or source.height <= 0:
        raise PoseFormatError(f"{path}: pickles do not record the frame size; set poses.width / poses.height")
    return PoseSequence(clean_keypoints(array[..., :2], array[..., 2]), source.fps, source.width, source.height,
                        f"{path}:{key}")


def _read_sequence(path: Path, key: str | None, source: PoseSourceConfig, missing_reason: str,
                   unreadable_reason: str, record: CurationRecord | None = None) -> PoseSequence:
    """Read one sequence; ``.pose`` files carry their own fps and frame size, other formats take the record's
    (when its annotations gave them) or else the config's."""
    if record is not None and (record.width or record.height or record.fps):
        source = dataclasses.replace(source, width=record.width or source.width,
                                     height=record.height or source.height, fps=record.fps or source.fps)
    if not path.is_file():
        raise RecordRejected(missing_reason, f"{path}: no such file")
    try:
        fmt = format_for_path(path) if source.format == "auto" else source.format
        size = {"fps": source.fps, "width": source.width or None, "height": source.height or None}
        if fmt == "pose":
            return read_pose(path, fmt)
        if fmt == "pickle":
            return _collection_sequence(path, key, source)
        return read_pose(path, fmt, **size, key=key)
    except (PoseFormatError, OSError, ValueError) as exc:
        raise RecordRejected(unreadable_reason, str(exc)) from exc


def _frame_range(record: CurationRecord, num_frames: int, fps: float) -> tuple[int, int]:
    if record.time_start is not None or record.time_end is not None:
        start = 0 if record.time_start is None else math.floor(record.time_start * fps + 0.5)
        end = num_frames if record.time_end is None else math.floor(record.time_end * fps + 0.5)
        if end == num_frames + 1:  # a cue ending on the last frame, rounded up
            end = num_frames
    else:
        start = 0 if record.frame_start is None else record.frame_start
        end = num_frames if record.frame_end is None else record.frame_end
    if start < 0 or end > num_frames or start > num_frames:
        raise RecordRejected("frame_range_outside", f"frames [{start}, {end}) outside a {num_frames}-frame sequence")
    if end <= start:
        raise RecordRejected("empty_clip", f"frames [{start}, {end}) hold no frame")
    return start, end


def _check_text(record: CurationRecord) -> None:
    if not record.paired:
        return
    if not record.text.strip():
        raise RecordRejected("empty_text", "paired record without text")
    bad = [c for c in record.text if c == "\ufffd" or (unicodedata.category(c) == "Cc" and c not in "\t\n")]
    if bad:
        raise RecordRejected("undecodable_text", f"text holds {len(bad)} replacement / control character(s) "
                             f"{sorted({f'U+{ord(c):04X}' for c in bad})}")


def curate_record(name: str, record: CurationRecord, settings: ProcessSettings) -> Sample:
    """One record → a validated shard sample, or :class:`RecordRejected` with the reason."""
    dataset = settings.datasets[name]
    _check_text(record)
    seq = _read_sequence(_resolve(dataset.poses.root, record.pose_path), record.pose_key, dataset.poses,
                         "missing_pose_file", "unreadable_pose", record)
    if record.extra_hand_path:
        from data_curation.extra_hands import merge_extra_hands

        hands_source = dataset.extra_hands or dataset.poses
        # A collection source (pickle) holds the hands under the clip's key; other sources are one file a clip.
        hands_path, hands_key = (("", record.extra_hand_path) if hands_source.format == "pickle"
                                 else (record.extra_hand_path, None))
        hands = _read_sequence(_resolve(hands_source.root, hands_path), hands_key, hands_source,
                               "missing_extra_hand_file", "unreadable_extra_hands", record)
        try:
            seq = merge_extra_hands(seq, hands)
        except ValueError as exc:
            raise RecordRejected("unreadable_extra_hands", str(exc)) from exc
    start, end = _frame_range(record, seq.num_frames, seq.fps)
    frames = end - start
    if frames < settings.min_frames:
        raise RecordRejected("too_few_frames", f"{frames} frames < min_frames={settings.min_frames}")
    if settings.max_frames and frames > settings.max_frames:
        raise RecordRejected("too_many_frames", f"{frames} frames > max_frames={settings.max_frames}")
    clip = dataclasses.replace(seq, keypoints=seq.keypoints[start:end])
    with np.errstate(over="ignore"):  # float16 overflow is what the finiteness check below looks for
        pose = to_shard_pose(clip)
    try:
        validate_pose(pose)
    except InvalidSample as exc:
        raise RecordRejected("non_finite_values", f"{exc} (coordinates beyond float16 range for a "
                             f"{seq.width}x{seq.height} frame)") from exc
    meta = SampleMeta(
        dataset=record.dataset, split=record.split, sign_language=record.sign_language,
        text_language=record.text_language,
        source_id=record.source_id, fps=seq.fps, width=seq.width, height=seq.height, signer=record.signer,
        frame_start=start, frame_end=end, text=record.text if record.paired else "", gloss=record.gloss,
        label=record.label, paired=record.paired,
        extra={"extra_hands": True} if record.extra_hand_path else {},
    )
    return Sample(key=record.key or make_key(record.dataset, record.split, record.source_id), pose=pose, meta=meta)


# -------------------------------------------------------------------------------------------------------- one job


def _reject_row(name: str, item: CurationRecord | AnnotationReject, reason: str, detail: str) -> dict[str, Any]:
    is_record = isinstance(item, CurationRecord)
    return {
        "dataset": item.dataset or name,
        "split": item.split,
        "source_id": item.source_id,
        "key": item.key if is_record else "",
        "reason": reason,
        "detail": detail,
        "pose_path": item.pose_path if is_record else "",
    }


def run_job(job: Job, output: str, settings: ProcessSettings) -> dict[str, Any]:
    """Curate one job: its shard, then its sidecar (the done marker). Returns the sidecar's content."""
    samples: list[Sample] = []
    rejects: list[dict[str, Any]] = []
    keys: set[str] = set()
    for name, item in job.items:
        if isinstance(item, AnnotationReject):
            rejects.append(_reject_row(name, item, item.reason, item.detail))
            continue
        try:
            sample = curate_record(name, item, settings)
            if sample.key in keys:
                raise RecordRejected("duplicate_key", f"key {sample.key!r} already used in this shard")
        except RecordRejected as exc:
            logger.info("rejected %s/%s %s: %s", item.dataset, item.split, item.source_id, exc)
            rejects.append(_reject_row(name, item, exc.reason, exc.detail))
            continue
        except Exception as exc:  # one odd file must not stop a million-clip build: log it loudly, reject it
            logger.exception("failed on %s/%s %s (%s)", item.dataset, item.split, item.source_id, item.pose_path)
            rejects.append(_reject_row(name, item, "processing_error", f"{type(exc).__name__}: {exc}"))
            continue
        keys.add(sample.key)
        samples.append(sample)
    out = Path(output)
    shard = shard_name(job.index) if samples else None
    if shard is not None:
        write_shard(out / "shards" / shard, samples)
    sidecar = {
        "fingerprint": job.fingerprint,
        "shard": shard,
        "records": len(job.items),
        "manifest": [manifest_row(s, shard) | {"text": s.meta.text if s.meta.paired else ""} for s in samples],
        "rejects": rejects,
    }
    _write_json_atomic(out / "parts" / sidecar_name(job.index), sidecar)
    return sidecar


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _finished(job: Job, output: Path) -> bool:
    """A job is done when its sidecar carries the same fingerprint and its shard (if any) is on disk."""
    path = output / "parts" / sidecar_name(job.index)
    if not path.is_file():
        return False
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if sidecar.get("fingerprint") != job.fingerprint:
        return False
    return sidecar.get("shard") is None or (output / "shards" / sidecar["shard"]).is_file()


# ---------------------------------------------------------------------------------------------------- the build


def _remove_temporaries(output: Path) -> None:
    for folder in ("shards", "parts"):
        for tmp in (output / folder).glob(f".{SHARD_PREFIX}-*.tmp"):
            tmp.unlink()


def _remove_stale(output: Path, num_jobs: int, shards_in_use: set[str]) -> int:
    """Shards and sidecars of this prefix that the finished build does not reference (an earlier, larger run)."""
    removed = 0
    for path in sorted((output / "shards").glob(f"{SHARD_PREFIX}-*.tar")):
        if path.name not in shards_in_use:
            path.unlink()
            removed += 1
    for path in sorted((output / "parts").glob(f"{SHARD_PREFIX}-*.json")):
        if int(path.stem.rsplit("-", 1)[1]) >= num_jobs:
            path.unlink()
            removed += 1
    return removed


def _run_jobs(jobs: Iterator[Job], output: Path, settings: ProcessSettings, workers: int,
              progress: tqdm) -> Iterator[tuple[Job, bool]]:
    """Run (or skip, when finished) every job; yields (job, resumed) in job order with bounded look-ahead."""
    if workers <= 1:
        for job in jobs:
            resumed = _finished(job, output)
            if not resumed:
                run_job(job, str(output), settings)
            progress.update(len(job.items))
            yield job, resumed
        return
    # Spawned workers import the library afresh (no forked torch / thread state); 2 × workers jobs in flight
    # keep them busy while the main process reads ahead, without reading the whole input.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: deque[tuple[Job, Future | None]] = deque()

        def drain_one() -> tuple[Job, bool]:
            job, future = pending.popleft()
            if future is not None:
                future.result()
            progress.update(len(job.items))
            return job, future is None

        for job in jobs:
            future = None if _finished(job, output) else pool.submit(run_job, job, str(output), settings)
            pending.append((job, future))
            while len(pending) > 2 * workers:
                yield drain_one()
        while pending:
            yield drain_one()


def build(cfg: CurateConfig, records: Iterable[Item] | None = None) -> dict[str, Any]:
    """Curate ``records`` (default: the config's adapters) into ``cfg.output``; returns the summary."""
    started = time.monotonic()
    output = Path(cfg.output)
    (output / "shards").mkdir(parents=True, exist_ok=True)
    (output / "parts").mkdir(parents=True, exist_ok=True)
    _remove_temporaries(output)
    settings = ProcessSettings(dict(cfg.datasets), cfg.min_frames, cfg.max_frames)
    items = iter_config_records(cfg) if records is None else iter(records)

    excluded: Counter[tuple[str, str]] = Counter()
    records_in: Counter[tuple[str, str]] = Counter()

    def selected() -> Iterator[Item]:
        for name, item in items:
            if name not in settings.datasets:
                raise ValueError(f"record of dataset {name!r}, which the config does not name")
            dataset = settings.datasets[name]
            # An annotation reject is logged whatever its split (it may have none: a CSL-Daily row missing from
            # the split list), so every annotation problem is in rejects.parquet.
            selected_split = item.split in dataset.splits and item.split not in dataset.exclude_splits
            if isinstance(item, CurationRecord) and not selected_split:
                excluded[(name, item.split)] += 1
                continue
            records_in[(name, item.split)] += 1
            yield name, item

    num_jobs = resumed_jobs = 0
    with tqdm(desc="curate", unit="rec", dynamic_ncols=True) as progress:
        for _job, resumed in _run_jobs(make_jobs(selected(), settings, cfg.records_per_shard), output, settings,
                                       cfg.workers, progress):
            num_jobs += 1
            resumed_jobs += int(resumed)
    summary = _merge(output, num_jobs)
    elapsed = time.monotonic() - started
    summary.update(_summarise_counts(summary.pop("_counts"), records_in, excluded))
    summary.update(jobs=num_jobs, resumed_jobs=resumed_jobs, workers=cfg.workers,
                   records_per_shard=cfg.records_per_shard, wall_seconds=round(elapsed, 3),
                   samples_per_second=round(summary["totals"]["written"] / elapsed, 2) if elapsed > 0 else 0.0)
    write_summary(output / "summary.json", summary)
    return summary


def _merge(output: Path, num_jobs: int) -> dict[str, Any]:
    """Stream the sidecars, in job order, into manifest.parquet and rejects.parquet; count as they pass."""
    counts: dict[str, Any] = {
        "written": Counter(), "paired": Counter(), "rejected": Counter(), "reasons": defaultdict(Counter),
        "language": defaultdict(Counter), "shards": set(), "records": 0,
    }

    def sidecars() -> Iterator[dict[str, Any]]:
        for index in range(num_jobs):
            sidecar = json.loads((output / "parts" / sidecar_name(index)).read_text(encoding="utf-8"))
            counts["records"] += sidecar["records"]
            if sidecar["shard"] is not None:
                counts["shards"].add(sidecar["shard"])
            yield sidecar

    def manifest_rows() -> Iterator[dict[str, Any]]:
        for sidecar in sidecars():
            for row in sidecar["manifest"]:
                where = (row["dataset"], row["split"])
                counts["written"][where] += 1
                counts["paired"][where] += int(row["paired"])
                language = counts["language"][row["sign_language"]]
                language["samples"] += 1
                language["paired"] += int(row["paired"])
                language["frames"] += row["frames"]
                yield row

    def reject_rows() -> Iterator[dict[str, Any]]:
        for index in range(num_jobs):
            sidecar = json.loads((output / "parts" / sidecar_name(index)).read_text(encoding="utf-8"))
            for row in sidecar["rejects"]:
                where = (row["dataset"], row["split"])
                counts["rejected"][where] += 1
                counts["reasons"][where][row["reason"]] += 1
                yield row

    samples = write_parquet_rows(manifest_rows(), output / "manifest.parquet", CURATED_MANIFEST_SCHEMA)
    rejected = write_parquet_rows(reject_rows(), output / "rejects.parquet", REJECTS_SCHEMA)
    stale = _remove_stale(output, num_jobs, counts["shards"])
    return {"_counts": counts, "samples": samples, "rejected": rejected, "shards": len(counts["shards"]),
            "stale_files_removed": stale}


def _summarise_counts(counts: dict[str, Any], records_in: Counter, excluded: Counter) -> dict[str, Any]:
    """Per dataset / split counts, rejects by reason, per sign language, and the reconciliation check."""
    by_dataset: dict[str, dict[str, Any]] = {}
    keys = sorted(set(records_in) | set(excluded))
    for dataset, split in keys:
        where = (dataset, split)
        entry = {
            "records_in": records_in[where],
            "excluded_split": excluded[where],
            "written": counts["written"][where],
            "paired": counts["paired"][where],
            "unpaired": counts["written"][where] - counts["paired"][where],
            "rejected": counts["rejected"][where],
            "rejects_by_reason": dict(sorted(counts["reasons"][where].items())),
        }
        by_dataset.setdefault(dataset, {})[split] = entry
    reasons: Counter[str] = Counter()
    for per_reason in counts["reasons"].values():
        reasons.update(per_reason)
    totals = {
        "records_in": sum(records_in.values()),
        "excluded_split": sum(excluded.values()),
        "written": sum(counts["written"].values()),
        "paired": sum(counts["paired"].values()),
        "rejected": sum(counts["rejected"].values()),
        "rejects_by_reason": dict(sorted(reasons.items())),
    }
    totals["unpaired"] = totals["written"] - totals["paired"]
    # Records were counted as they entered the jobs and again as they left the sidecars: both must agree.
    mismatched = [f"{d}/{s}" for d, s in keys
                  if records_in[(d, s)] != counts["written"][(d, s)] + counts["rejected"][(d, s)]]
    reconciled = not mismatched and totals["records_in"] == counts["records"] == totals["written"] + totals["rejected"]
    if not reconciled:
        raise RuntimeError(f"curation counts do not reconcile (records in {totals['records_in']}, sidecars "
                           f"{counts['records']}, written {totals['written']} + rejected {totals['rejected']}; "
                           f"mismatched: {mismatched})")
    by_language = {
        language: {"samples": c["samples"], "paired": c["paired"], "unpaired": c["samples"] - c["paired"],
                   "frames": c["frames"]}
        for language, c in sorted(counts["language"].items())
    }
    return {"by_dataset": by_dataset, "by_sign_language": by_language, "totals": totals, "reconciled": reconciled}
