"""The curation pipeline: adapter records → validated pose clips → WebDataset shards, manifest and rejects.

Layout of a build's output folder::

    shards/sl15m-{i:06d}.tar      the samples of job i (no file when every record of the job was rejected)
    parts/sl15m-{i:06d}.json      job i's sidecar: input fingerprint, manifest rows, reject and warning rows
    manifest.parquet              one row per sample, in input order (the sidecars merged)
    rejects.parquet               one row per rejected record, with its reason and detail
    warnings.parquet              one row per warning: a record written, with something worth knowing (below)
    errors.log                    the traceback of every ``processing_error`` (only when there is one)
    summary.json                  counts per dataset / split / sign language, rejects and warnings by reason,
                                  reconciliation

Scaling rules, each a design decision:

- *Streaming*: datasets are read in config order, each adapter's records lazily, and cut into jobs of
  ``records_per_shard`` consecutive input records (adapter rejects included, so they land in the job's sidecar).
  At most ``2 × workers`` jobs are in flight. What grows with the input is one 64-bit hash per sample key (the
  keys' uniqueness, below); the records themselves are never all held.
- *Deterministic*: a job's output depends only on its records and the settings, never on the worker that ran
  it, timestamps or the output path; shards are written with fixed tar metadata (:func:`slp.data.shards.write_shard`).
  Any worker count therefore gives byte-identical shards, manifest, rejects and warnings.
- *Atomic and resumable*: a job writes its shard (temporary name, then rename) and then its sidecar the same
  way; the sidecar is the "done" marker. A rerun skips a job whose sidecar holds the same input fingerprint
  (a hash of its records and of the settings that shape its output) and whose shard exists, unless one of its
  records failed with a ``processing_error``; anything else is redone. Temporary files of a killed run are
  removed at start, and shards / sidecars of job indices beyond the current run (left by an earlier, larger
  input) at the end.
- *Fail early*: the config is checked (:func:`~data_curation.config.check_config`: types, ranges, annotation and
  pose roots) and every adapter opened (registered name, options) before the first record is read, so a mistake
  in the last dataset of a config does not surface after hours of work.

Names and keys: a dataset entry's name in the config (``datasets:`` key) is the ``dataset`` of its samples and
rows; its ``adapter`` only says how to read it. A sample key is made of the entry name, split and source id with
every character outside ``[A-Za-z0-9_-]`` replaced by ``-`` (:func:`slp.data.schema.make_key`), so two source
ids can map to one key (``clip.1`` and ``clip-1``). Keys are made unique over the whole build in the main
process, in input order, before the records are cut into jobs: a key an earlier record took is given the
suffix ``-<8 hex digits of the SHA-1 of "<entry>/<split>/<source id>">`` (and ``-2``, ``-3``… in the
astronomically unlikely case that is taken too), with a ``key_collision`` warning naming both. That depends
only on the input order, so worker counts and resumed runs give the same keys.

Geometry (fps, frame size): a value the pose file records (``.pose``, ``.npz``) is the sequence's: its
coordinates are pixels of the video the estimator saw, at that video's frame rate. The annotation's value
(MS-ASL records each video's size and fps) serves formats that record none, and the config's values last.
Where the file and the annotation both give a value and disagree (fps by more than 1 %, a size at all), the
file's is used and a warning counted — except that a record whose clip is a frame range counted at the
annotation's fps cannot be cut at another fps: it is rejected (``frame_range_fps_mismatch``).

Per-record checks, in order. Rejects (the record is not written):

====================================  ===========================================================================
``<adapter's reason>``                an annotation the adapter could not use (see each adapter's docstring)
``empty_text``                        a paired record without text
``undecodable_text``                  a paired text holding replacement or control characters
``missing_pose_file``                 no pose file (or a folder where it belongs, or no such sequence in a
                                      pickle collection)
``unreadable_pose``                   the pose file is corrupt, not its format, or lacks / records an invalid fps
                                      or frame size
``unsupported_layout``                a readable pose file whose keypoints are not COCO-WholeBody 133 (the
                                      detail names its layout: components and point counts, or array shape)
``unsupported_dtype``                 an array of values that are not real numbers (complex, boolean, text)
``frame_range_fps_mismatch``          the clip's frame range is counted at the annotation's fps, which the pose
                                      file's disagrees with
``missing_extra_hand_file``           the extra-hand source has no file (or sequence) for the clip
``unreadable_extra_hands``            the extra-hand file cannot be read or merged (other length, layout…)
``frame_range_outside``               the clip's range lies outside the sequence
``empty_clip``                        the clip's range holds no frame
``too_few_frames``                    fewer than ``min_frames`` frames
``too_many_frames``                   more than ``max_frames`` frames (when ``max_frames`` > 0)
``no_detections``                     no kept point is detected in any frame of the clip: an all-NaN array,
                                      every confidence <= 0, an MMPose file without instances, every point far
                                      outside the frame (the detail says so, and that the frame size or the
                                      coordinate units are to be checked), or a file holding no frame
``invalid_sample``                    the sample breaks the shard schema (:func:`slp.data.schema.validate_sample`)
``processing_error``                  an unexpected exception: a bug. The detail is its one-line message, the
                                      traceback is in ``errors.log``; one odd file does not stop a long build
====================================  ===========================================================================

Warnings (the record is written, the row goes to ``warnings.parquet`` and the counts to the summary):

====================================  ===========================================================================
``key_collision``                     the key was taken by an earlier record: this one's has a hash suffix
``fps_mismatch``                      the pose file's fps differs from the annotation's by more than 1 %: the
                                      file's is used
``frame_size_mismatch``               the pose file's frame size differs from the annotation's: the file's is used
``frame_count_mismatch``              the clip's frame count differs from the annotation's by more than one frame
``points_outside_frame``              detected points more than half the frame size outside the frame were made
                                      missing (:data:`slp.pose.readers.OUTSIDE_MARGIN`; the detail counts them)
====================================  ===========================================================================

Missing points: the readers turn a NaN / inf point into a missing point (confidence 0) — that is how detectors
mark failures, so it is repaired, not rejected; so is a point far outside the frame (counted as above), which
also keeps every written coordinate within float16's range.

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
import traceback
import unicodedata
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from data_curation.adapters import DatasetAdapter, get_adapter
from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig, check_config
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError, file_problem, folder_problem
from slp.data.schema import InvalidSample, Sample, SampleMeta, make_key, validate_sample
from slp.data.shards import (
    MANIFEST_SCHEMA,
    manifest_row,
    write_parquet_rows,
    write_shard,
    write_summary,
)
from slp.pose.readers import (
    OUTSIDE_MARGIN,
    MissingPose,
    PoseFormatError,
    PoseSequence,
    collection_sequence,
    format_for_path,
    read_pickle_collection,
    read_pose,
    shard_pose_and_outside,
)
from slp.threads import set_process_threads

logger = logging.getLogger(__name__)

SHARD_PREFIX = "sl15m"
#: Bumped when the per-record processing changes, so a resumed build redoes jobs made by older code.
PIPELINE_VERSION = 2
#: Relative difference between a pose file's fps and the annotation's beyond which they disagree (29.97 vs 30
#: is the same video rate).
FPS_TOLERANCE = 0.01
#: Frames by which a clip may differ from its annotated length (decoders disagree by one at the ends).
FRAME_COUNT_TOLERANCE = 1

#: The manifest of a curated build: the shard manifest plus the text (for Table II's unique sentences) and the
#: adapter of the sample's dataset entry (for Table II's source kinds).
CURATED_MANIFEST_SCHEMA = MANIFEST_SCHEMA.append(pa.field("text", pa.string())).append(pa.field("adapter", pa.string()))
#: Rows of rejects.parquet and of warnings.parquet.
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
ERRORS_LOG = "errors.log"

Item = tuple[str, CurationRecord | AnnotationReject]  # (dataset entry name in the config, what its adapter yielded)
Note = tuple[str, str]  # a warning: (reason, detail)


@dataclass
class ProcessSettings:
    """What shapes a job's output besides its records (part of the resume fingerprint)."""

    datasets: dict[str, DatasetConfig]
    min_frames: int
    max_frames: int


@dataclass
class JobItem:
    name: str  # dataset entry
    item: CurationRecord | AnnotationReject
    notes: list[Note] = field(default_factory=list)  # warnings found before the job (a renamed key)


@dataclass
class Job:
    index: int
    items: list[JobItem]
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


def open_adapters(cfg: CurateConfig) -> dict[str, DatasetAdapter]:
    """Every enabled dataset entry's adapter, opened now: an unknown adapter or a bad option is a
    :class:`~slp.cli_errors.UserError` naming the entry, before any record is read (the annotation roots are
    checked with the config, :func:`~data_curation.config.check_config`)."""
    adapters = {}
    for name, dataset in cfg.datasets.items():
        if not dataset.enabled:
            continue
        try:
            adapter_class = get_adapter(dataset.adapter)
        except UserError as exc:
            raise UserError(f"datasets.{name}.adapter: {exc}") from None
        adapters[name] = adapter_class(dataset, name)
    return adapters


def iter_config_records(cfg: CurateConfig) -> Iterator[Item]:
    """Every dataset's adapter records, in config order, lazily (the adapters are opened at once)."""
    adapters = open_adapters(cfg)
    return ((name, item) for name, adapter in adapters.items() for item in adapter.records())


class KeyClaims:
    """The keys handed out so far in a build (as 64-bit hashes): a key taken before gets a suffix (module rule)."""

    def __init__(self) -> None:
        self._taken: set[int] = set()

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")

    def claim(self, key: str, origin: str) -> tuple[str, Note | None]:
        """``key`` if it is free, else its suffixed form, with the ``key_collision`` warning."""
        candidate, attempt, suffix = key, 0, ""
        while (digest := self._digest(candidate)) in self._taken:
            attempt += 1
            suffix = suffix or hashlib.sha1(origin.encode("utf-8")).hexdigest()[:8]
            candidate = f"{key}-{suffix}" + (f"-{attempt}" if attempt > 1 else "")
        self._taken.add(digest)
        if candidate == key:
            return key, None
        return candidate, ("key_collision", f"key {key!r} was taken by an earlier record; {origin} is written as "
                                            f"{candidate!r}")


def _fingerprint(items: list[JobItem], settings: ProcessSettings) -> str:
    used = sorted({entry.name for entry in items})
    payload = {
        "version": PIPELINE_VERSION,
        "min_frames": settings.min_frames,
        "max_frames": settings.max_frames,
        "datasets": {name: dataclasses.asdict(settings.datasets[name]) for name in used},
        "items": [[e.name, type(e.item).__name__, dataclasses.asdict(e.item), e.notes] for e in items],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def make_jobs(items: Iterable[JobItem], settings: ProcessSettings, records_per_shard: int) -> Iterator[Job]:
    """Cut the record stream into jobs of ``records_per_shard`` consecutive items, lazily."""
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be positive, got {records_per_shard}")
    batch: list[JobItem] = []
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
def _pickle_collection(path: str, allow_pickle: bool) -> dict[str, Any]:
    """A worker unpickles each SLRT collection once, not once per clip (records of one file come together)."""
    return read_pickle_collection(path, allow_pickle=allow_pickle)


def _read_sequence(path: Path, key: str | None, source: PoseSourceConfig, record: CurationRecord) -> PoseSequence:
    """Read one sequence; what the file does not record comes from the record (the annotation) or else the
    config (the module's geometry rule). Raises :class:`PoseFormatError`."""
    fallback = {"fps": record.fps or source.fps, "width": record.width or source.width or None,
                "height": record.height or source.height or None}
    fmt = format_for_path(path) if source.format == "auto" else source.format
    if fmt != "pickle":
        return read_pose(path, fmt, **fallback)  # it checks the file and reports I/O errors as PoseFormatError
    # A collection is unpickled once per worker (cached), then each record takes its sequence from it.
    if problem := file_problem(path):
        raise MissingPose(f"{path}: {problem}")
    try:
        return collection_sequence(_pickle_collection(str(path), source.allow_pickle), key, path, **fallback)
    except OSError as exc:  # permissions, I/O errors
        raise PoseFormatError(f"{path}: {exc.strerror or exc}") from exc


def _geometry_notes(seq: PoseSequence, record: CurationRecord) -> list[Note]:
    """Warnings for a recorded fps / frame size that disagrees with the annotation's (the file's stays), or the
    ``frame_range_fps_mismatch`` reject for a frame range counted at the annotation's fps."""
    notes = []
    if "fps" in seq.recorded and record.fps and abs(seq.fps - record.fps) > FPS_TOLERANCE * record.fps:
        detail = f"{seq.source}: the pose file records {seq.fps:g} fps, the annotation says {record.fps:g}"
        if record.frame_start is not None or record.frame_end is not None:
            raise RecordRejected("frame_range_fps_mismatch", f"{detail}; the clip's frame range "
                                 f"[{record.frame_start}, {record.frame_end}) is counted at the annotation's fps")
        notes.append(("fps_mismatch", f"{detail}; the file's is used"))
    differing = [f"{name} {getattr(seq, name)} (annotation {getattr(record, name)})" for name in ("width", "height")
                 if name in seq.recorded and getattr(record, name) and getattr(seq, name) != getattr(record, name)]
    if differing:
        notes.append(("frame_size_mismatch", f"{seq.source}: the pose file records {', '.join(differing)}; the "
                                             f"file's is used"))
    return notes


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


def _main_sequence(dataset: DatasetConfig, record: CurationRecord) -> PoseSequence:
    try:
        return _read_sequence(_resolve(dataset.poses.root, record.pose_path), record.pose_key, dataset.poses, record)
    except PoseFormatError as exc:
        raise RecordRejected(exc.reason, str(exc)) from exc


def _with_extra_hands(seq: PoseSequence, dataset: DatasetConfig, record: CurationRecord) -> PoseSequence:
    from data_curation.extra_hands import merge_extra_hands

    source = dataset.extra_hands or dataset.poses
    # A collection source (pickle) holds the hands under the clip's key; other sources are one file a clip.
    path, key = ("", record.extra_hand_path) if source.format == "pickle" else (record.extra_hand_path, None)
    try:
        hands = _read_sequence(_resolve(source.root, path), key, source, record)
        return merge_extra_hands(seq, hands)
    except MissingPose as exc:
        raise RecordRejected("missing_extra_hand_file", str(exc)) from exc
    except ValueError as exc:  # PoseFormatError, or sequences that do not match
        raise RecordRejected("unreadable_extra_hands", str(exc)) from exc


def curate_record(name: str, record: CurationRecord, settings: ProcessSettings) -> tuple[Sample, list[Note]]:
    """One record → a validated shard sample and its warnings, or :class:`RecordRejected` with the reason."""
    dataset = settings.datasets[name]
    _check_text(record)
    seq = _main_sequence(dataset, record)
    if seq.num_frames == 0:
        raise RecordRejected("no_detections", f"{seq.source}: the pose file holds no frame")
    notes = _geometry_notes(seq, record)
    if record.extra_hand_path:
        seq = _with_extra_hands(seq, dataset, record)
    start, end = _frame_range(record, seq.num_frames, seq.fps)
    frames = end - start
    if frames < settings.min_frames:
        raise RecordRejected("too_few_frames", f"{frames} frames < min_frames={settings.min_frames}")
    if settings.max_frames and frames > settings.max_frames:
        raise RecordRejected("too_many_frames", f"{frames} frames > max_frames={settings.max_frames}")
    if record.annotated_frames and abs(frames - record.annotated_frames) > FRAME_COUNT_TOLERANCE:
        notes.append(("frame_count_mismatch", f"{seq.source}: the clip has {frames} frames, the annotation says "
                                              f"{record.annotated_frames}"))
    pose, outside = shard_pose_and_outside(dataclasses.replace(seq, keypoints=seq.keypoints[start:end]))
    if outside:
        notes.append(("points_outside_frame", f"{seq.source}: {outside} detected point(s) more than "
                                              f"{OUTSIDE_MARGIN:.0%} of the {seq.width}x{seq.height} frame outside "
                                              f"it, made missing"))
    if not (pose[..., 2] > 0).any():
        if outside:  # every detected point was made missing for lying outside: a wrong frame size or unit
            raise RecordRejected("no_detections", f"{seq.source}: all {outside} detected points in frames [{start}, "
                                                  f"{end}) lie outside the {seq.width}x{seq.height} frame "
                                                  f"(points_outside_frame): check the frame size or the coordinate "
                                                  f"units")
        raise RecordRejected("no_detections", f"{seq.source}: no kept point is detected in frames [{start}, {end})")
    meta = SampleMeta(
        dataset=name, split=record.split, sign_language=record.sign_language, text_language=record.text_language,
        source_id=record.source_id, fps=seq.fps, width=seq.width, height=seq.height, signer=record.signer,
        frame_start=start, frame_end=end, text=record.text if record.paired else "", gloss=record.gloss,
        label=record.label, paired=record.paired, pose_layout=seq.layout, pose_estimator=seq.estimator,
        extra={"extra_hands": True} if record.extra_hand_path else {},
    )
    sample = Sample(key=record.key, pose=pose, meta=meta)
    try:
        validate_sample(sample)
    except InvalidSample as exc:
        raise RecordRejected("invalid_sample", str(exc)) from exc
    return sample, notes


# -------------------------------------------------------------------------------------------------------- one job


def _row(name: str, item: CurationRecord | AnnotationReject, reason: str, detail: str) -> dict[str, Any]:
    """A rejects.parquet / warnings.parquet row."""
    is_record = isinstance(item, CurationRecord)
    return {
        "dataset": name,
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
    warnings: list[dict[str, Any]] = []
    for entry in job.items:
        name, item = entry.name, entry.item
        if isinstance(item, AnnotationReject):
            rejects.append(_row(name, item, item.reason, item.detail))
            continue
        try:
            sample, notes = curate_record(name, item, settings)
        except RecordRejected as exc:
            logger.debug("rejected %s/%s %s: %s", name, item.split, item.source_id, exc)
            rejects.append(_row(name, item, exc.reason, exc.detail))
            continue
        except Exception as exc:  # one odd file must not stop a million-clip build: keep its traceback, reject it
            detail = " ".join(f"{type(exc).__name__}: {exc}".split("\n"))
            rejects.append(_row(name, item, "processing_error", f"{detail} (traceback in {ERRORS_LOG})")
                           | {"traceback": traceback.format_exc()})
            continue
        warnings += [_row(name, item, reason, detail) for reason, detail in [*entry.notes, *notes]]
        samples.append(sample)
    out = Path(output)
    shard = shard_name(job.index) if samples else None
    if shard is not None:
        write_shard(out / "shards" / shard, samples, validate=False)  # curate_record validated each sample
    sidecar = {
        "fingerprint": job.fingerprint,
        "shard": shard,
        "records": len(job.items),
        "manifest": [manifest_row(s, shard) | {"text": s.meta.text if s.meta.paired else "",
                                               "adapter": settings.datasets[s.meta.dataset].adapter}
                     for s in samples],
        "rejects": rejects,
        "warnings": warnings,
    }
    _write_json_atomic(out / "parts" / sidecar_name(job.index), sidecar)
    return sidecar


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _finished(job: Job, output: Path) -> bool:
    """A job is done when its sidecar carries the same fingerprint and its shard (if any) is on disk, and none of
    its records failed with a ``processing_error`` (a bug since fixed, an I/O error since gone: it is redone)."""
    path = output / "parts" / sidecar_name(job.index)
    if not path.is_file():
        return False
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON (ValueError): not this build's, redo the job
        return False
    if not isinstance(sidecar, dict) or sidecar.get("fingerprint") != job.fingerprint:
        return False
    if any(row["reason"] == "processing_error" for row in sidecar["rejects"]):
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
        index = path.stem.rsplit("-", 1)[1]
        if index.isdigit() and int(index) >= num_jobs:  # not a number: no sidecar of ours (a user's copy), kept
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
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=set_process_threads,
                             initargs=(workers,)) as pool:
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


def build(cfg: CurateConfig, records: Iterable[Item] | None = None, *, source: str = "curate config") -> dict[str, Any]:
    """Curate ``records`` (default: the config's adapters) into ``cfg.output``; returns the summary. ``source``
    names the config in the messages of its mistakes (the config file's path)."""
    started = time.monotonic()
    check_config(cfg, source)
    items = iter_config_records(cfg) if records is None else iter(records)
    output = Path(cfg.output)
    for folder in (output / "shards", output / "parts"):
        if (problem := folder_problem(folder)) not in (None, "no such folder"):
            raise UserError(f"{source}: output: {folder}: {problem} (the build writes its {folder.name} there)")
    (output / "shards").mkdir(parents=True, exist_ok=True)
    (output / "parts").mkdir(parents=True, exist_ok=True)
    _remove_temporaries(output)
    settings = ProcessSettings(dict(cfg.datasets), cfg.min_frames, cfg.max_frames)

    excluded: Counter[tuple[str, str]] = Counter()
    records_in: Counter[tuple[str, str]] = Counter()
    keys = KeyClaims()

    def selected() -> Iterator[JobItem]:
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
            notes: list[Note] = []
            if isinstance(item, CurationRecord):
                key, note = keys.claim(item.key or make_key(name, item.split, item.source_id),
                                       f"{name}/{item.split}/{item.source_id}")
                item = dataclasses.replace(item, key=key) if key != item.key else item
                notes = [note] if note else []
            yield JobItem(name, item, notes)

    num_jobs = resumed_jobs = 0
    # leave=False: the bar is erased when the build ends, so an error line is the only line a failed build leaves.
    with tqdm(desc="curate", unit="rec", dynamic_ncols=True, leave=False) as progress:
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
    """Stream the sidecars, in job order and each read once, into manifest.parquet, rejects.parquet,
    warnings.parquet and errors.log; count as they pass. The manifest rows stream through; the reject and warning
    rows (few, and their tracebacks written out at once) are held until the pass ends."""
    counts: dict[str, Any] = {
        "written": Counter(), "paired": Counter(), "rejected": Counter(), "reasons": defaultdict(Counter),
        "warned": Counter(), "warning_reasons": defaultdict(Counter), "language": defaultdict(Counter),
        "shards": set(), "records": 0,
    }
    reject_rows: list[dict[str, Any]] = []
    warning_rows: list[dict[str, Any]] = []

    def counted(rows: list[dict[str, Any]], total: str, by_reason: str) -> list[dict[str, Any]]:
        for row in rows:
            where = (row["dataset"], row["split"])
            counts[total][where] += 1
            counts[by_reason][where][row["reason"]] += 1
        return rows

    def manifest_rows(errors) -> Iterator[dict[str, Any]]:
        for index in range(num_jobs):
            sidecar = json.loads((output / "parts" / sidecar_name(index)).read_text(encoding="utf-8"))
            counts["records"] += sidecar["records"]
            if sidecar["shard"] is not None:
                counts["shards"].add(sidecar["shard"])
            for row in counted(sidecar["rejects"], "rejected", "reasons"):
                if "traceback" in row:
                    errors.write(f"{row['dataset']}/{row['split']} {row['source_id']} ({row['pose_path']}):\n"
                                 f"{row.pop('traceback')}\n")
                reject_rows.append(row)
            warning_rows.extend(counted(sidecar["warnings"], "warned", "warning_reasons"))
            for row in sidecar["manifest"]:
                where = (row["dataset"], row["split"])
                counts["written"][where] += 1
                counts["paired"][where] += int(row["paired"])
                language = counts["language"][row["sign_language"]]
                language["samples"] += 1
                language["paired"] += int(row["paired"])
                language["frames"] += row["frames"]
                yield row

    errors_tmp = output / f".{ERRORS_LOG}.tmp"
    with open(errors_tmp, "w", encoding="utf-8") as errors:
        samples = write_parquet_rows(manifest_rows(errors), output / "manifest.parquet", CURATED_MANIFEST_SCHEMA)
    if errors_tmp.stat().st_size:
        os.replace(errors_tmp, output / ERRORS_LOG)
    else:  # no error in this build: none of an earlier one may stay
        errors_tmp.unlink()
        (output / ERRORS_LOG).unlink(missing_ok=True)
    rejected = write_parquet_rows(reject_rows, output / "rejects.parquet", REJECTS_SCHEMA)
    warned = write_parquet_rows(warning_rows, output / "warnings.parquet", REJECTS_SCHEMA)
    stale = _remove_stale(output, num_jobs, counts["shards"])
    return {"_counts": counts, "samples": samples, "rejected": rejected, "warnings": warned,
            "shards": len(counts["shards"]), "stale_files_removed": stale}


def _summarise_counts(counts: dict[str, Any], records_in: Counter, excluded: Counter) -> dict[str, Any]:
    """Per dataset / split counts, rejects and warnings by reason, per sign language, and the reconciliation."""
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
            "warnings": counts["warned"][where],
            "warnings_by_reason": dict(sorted(counts["warning_reasons"][where].items())),
        }
        by_dataset.setdefault(dataset, {})[split] = entry

    def by_reason(name: str) -> dict[str, int]:
        total: Counter[str] = Counter()
        for per_reason in counts[name].values():
            total.update(per_reason)
        return dict(sorted(total.items()))

    totals = {
        "records_in": sum(records_in.values()),
        "excluded_split": sum(excluded.values()),
        "written": sum(counts["written"].values()),
        "paired": sum(counts["paired"].values()),
        "rejected": sum(counts["rejected"].values()),
        "rejects_by_reason": by_reason("reasons"),
        "warnings": sum(counts["warned"].values()),
        "warnings_by_reason": by_reason("warning_reasons"),
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
