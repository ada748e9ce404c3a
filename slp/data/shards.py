"""WebDataset shards of SL-1.5M samples: writing, streaming reading with validation, manifest and summary.

Writing uses :mod:`tarfile` with fixed member metadata (mtime 0, root owner, mode 0444) so the same samples
always give the same bytes: curation output is then comparable byte for byte across worker counts and
resumed runs. A shard is written under a hidden temporary name in its folder and renamed when complete, so a
reader globbing ``*.tar`` never sees half a shard. Reading goes through webdataset; a malformed sample or a
truncated tar is logged with its shard, key and reason, counted in :class:`ReadStats`, and skipped.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from slp.data.schema import POSE_DTYPE, InvalidSample, Sample, SampleMeta, validate_pose

logger = logging.getLogger(__name__)

_VALID_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
DEFAULT_MAX_BYTES = 256 * 2**20


@dataclass
class ShardInfo:
    path: str
    num_samples: int
    num_bytes: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def encode_sample(sample: Sample) -> dict[str, bytes]:
    """The members of one sample: ``pose.npy``, ``json`` and, for paired samples, ``txt``."""
    if not _VALID_KEY.match(sample.key):
        raise ValueError(f"sample key {sample.key!r} must match [A-Za-z0-9_-]+ (WebDataset splits keys at dots)")
    pose = np.ascontiguousarray(sample.pose, dtype=POSE_DTYPE)
    validate_pose(pose)
    buf = io.BytesIO()
    np.save(buf, pose, allow_pickle=False)
    members = {
        "pose.npy": buf.getvalue(),
        "json": json.dumps(sample.meta.to_json(), sort_keys=True, ensure_ascii=False).encode("utf-8"),
    }
    if sample.meta.paired:
        members["txt"] = sample.meta.text.encode("utf-8")
    return members


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write_shard(path: str | Path, samples: Iterable[Sample]) -> ShardInfo:
    """Write ``samples`` to the tar ``path`` atomically (temporary name, then rename); same input, same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    count = 0
    try:
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in samples:
                for ext, data in encode_sample(sample).items():
                    _add_member(tar, f"{sample.key}.{ext}", data)
                count += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardInfo(str(path), count, path.stat().st_size)


class ShardWriter:
    """Writes samples into ``{prefix}-{index:06d}.tar`` shards of at most ``max_samples`` / about ``max_bytes``.

    Samples of the current shard are held in memory (encoded) until the shard is full, then written with
    :func:`write_shard`, so every shard on disk is complete.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "shard",
        max_samples: int = 1000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_index: int = 0,
    ):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError("max_samples and max_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.index = start_index
        self.shards: list[ShardInfo] = []
        self._pending: list[Sample] = []
        self._pending_bytes = 0
        self._keys: set[str] = set()

    def write(self, sample: Sample) -> None:
        if sample.key in self._keys:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        size = sum(len(v) + 1024 for v in encode_sample(sample).values())  # + tar headers and padding
        if self._pending and (
            len(self._pending) >= self.max_samples or self._pending_bytes + size > self.max_bytes
        ):
            self._flush()
        self._keys.add(sample.key)
        self._pending.append(sample)
        self._pending_bytes += size

    def _flush(self) -> None:
        if not self._pending:
            return
        path = self.out_dir / f"{self.prefix}-{self.index:06d}.tar"
        self.shards.append(write_shard(path, self._pending))
        self.index += 1
        self._pending, self._pending_bytes = [], 0

    def close(self) -> list[ShardInfo]:
        self._flush()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


_NPY_HEADER = re.compile(rb"'descr':\s*'([^']+)',\s*'fortran_order':\s*False,\s*'shape':\s*\(([0-9, ]*)\)")


def load_npy(data: bytes) -> np.ndarray:
    """A C-order ``.npy`` from bytes without np.load's generic header evaluation (a third of decode time)."""
    if data[:6] != b"\x93NUMPY":
        raise InvalidSample("pose.npy is not a .npy file")
    major = data[6]
    size_bytes = 2 if major == 1 else 4
    header_len = int.from_bytes(data[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    match = _NPY_HEADER.search(data[start : start + header_len])
    if match is None:  # Fortran order or an unusual header: let numpy handle it
        return np.load(io.BytesIO(data), allow_pickle=False)
    shape = tuple(int(x) for x in match.group(2).split(b",") if x.strip())
    try:
        return np.frombuffer(data, dtype=match.group(1).decode(), offset=start + header_len).reshape(shape)
    except ValueError as exc:
        raise InvalidSample(f"unreadable pose.npy ({exc})") from exc


def decode_sample(raw: dict[str, Any]) -> Sample:
    """A webdataset sample dict (bytes per extension, ``__key__``) → validated :class:`Sample`."""
    key = raw.get("__key__", "?")
    missing = [m for m in ("pose.npy", "json") if m not in raw]
    if missing:
        raise InvalidSample(f"missing member(s) {missing}")
    try:
        meta = SampleMeta.from_json(json.loads(raw["json"].decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise InvalidSample(f"unreadable json ({exc})") from exc
    try:
        pose = load_npy(raw["pose.npy"])
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidSample(f"unreadable pose.npy ({exc})") from exc
    if pose.dtype != POSE_DTYPE:
        raise InvalidSample(f"pose dtype {pose.dtype}, expected {np.dtype(POSE_DTYPE)}")
    validate_pose(pose)
    if meta.paired:
        if "txt" not in raw:
            raise InvalidSample("paired sample without txt")
        meta.text = raw["txt"].decode("utf-8")
    return Sample(key=key, pose=pose, meta=meta)


@dataclass
class ReadStats:
    """What a read produced and what it skipped (with the shard, key and reason of each skip)."""

    samples: int = 0
    rejected: int = 0  # malformed samples in intact shards
    truncated_shards: int = 0
    lost_to_truncation: int = 0  # incomplete samples at the cut of a truncated shard
    errors: list[dict[str, str]] = field(default_factory=list)

    def record(self, shard: str, key: str, reason: str) -> None:
        self.errors.append({"shard": shard, "key": key, "reason": reason})
        logger.warning("skipped %s in %s: %s", key or "the rest of the shard", shard, reason)


def _is_complete_tar(path: str) -> bool:
    """A tar ends with two zero blocks; one cut at a block boundary otherwise reads as a short, valid archive."""
    if not os.path.isfile(path):
        return True  # a remote URL: truncation surfaces as a stream error instead
    size = os.path.getsize(path)
    if size < 1024 or size % 512:
        return False
    with open(path, "rb") as f:
        f.seek(-1024, os.SEEK_END)
        return f.read(1024) == bytes(1024)


def iter_samples(urls: Iterable[str | Path], stats: ReadStats | None = None) -> Iterator[Sample]:
    """Stream validated samples from shards; malformed samples and truncated tars are logged, counted, skipped."""
    stats = stats if stats is not None else ReadStats()
    for url in map(str, urls):
        truncated = not _is_complete_tar(url)
        if truncated:
            stats.truncated_shards += 1
            stats.record(url, "", "truncated tar (no end-of-archive marker)")

        def on_stream_error(exc: Exception, url: str = url) -> bool:
            # webdataset hands stream errors (a tar cut inside a member, corrupt headers) here.
            nonlocal truncated
            if not truncated:
                truncated = True
                stats.truncated_shards += 1
                stats.record(url, "", f"unreadable tar ({type(exc).__name__}: {exc})")
            return True

        # Callers split shards by rank and worker themselves: webdataset's own splitters would hand this one
        # shard to one dataloader worker only and leave the others with nothing (an endless empty epoch).
        dataset = wds.WebDataset([url], shardshuffle=False, empty_check=False, handler=on_stream_error,
                                 nodesplitter=None, workersplitter=None)
        for raw in dataset:
            key = raw.get("__key__", "?")
            try:
                sample = decode_sample(raw)
            except InvalidSample as exc:
                if truncated:
                    stats.lost_to_truncation += 1
                else:
                    stats.rejected += 1
                stats.record(url, key, str(exc))
                continue
            stats.samples += 1
            yield sample


MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("sign_language", pa.string()),
        ("text_language", pa.string()),
        ("frames", pa.int32()),
        ("fps", pa.float32()),
        ("paired", pa.bool_()),
        ("text_length", pa.int32()),
        ("label", pa.int32()),
        ("source_id", pa.string()),
        ("signer", pa.string()),
    ]
)


def manifest_row(sample: Sample, shard: str) -> dict[str, Any]:
    """One manifest row (see :data:`MANIFEST_SCHEMA`) for ``sample`` stored in shard ``shard``."""
    meta = sample.meta
    return {
        "key": sample.key,
        "shard": shard,
        "dataset": meta.dataset,
        "split": meta.split,
        "sign_language": meta.sign_language,
        "text_language": meta.text_language,
        "frames": int(sample.pose.shape[0]),
        "fps": float(meta.fps),
        "paired": bool(meta.paired),
        "text_length": len(meta.text) if meta.paired else 0,
        "label": int(meta.label),
        "source_id": meta.source_id,
        "signer": meta.signer,
    }


def write_parquet_rows(
    rows: Iterable[dict[str, Any]], path: str | Path, schema: pa.Schema, batch_rows: int = 8192
) -> int:
    """Stream ``rows`` into a Parquet file in batches (memory stays flat); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    count = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    count += len(batch)
                    batch = []
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def write_manifest(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """The Parquet manifest: one row per sample (:func:`manifest_row`)."""
    return write_parquet_rows(rows, path, MANIFEST_SCHEMA)


def read_manifest(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def write_summary(path: str | Path, data: dict[str, Any]) -> None:
    """A machine-readable JSON summary (sorted keys, UTF-8), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
