"""WebDataset shards of SL-1.5M samples: writing, streaming reading with validation, manifest and summary.

Writing uses :mod:`tarfile` with fixed member metadata (mtime 0, root owner, mode 0444) so the same samples
always give the same bytes: curation output is then comparable byte for byte across worker counts and
resumed runs. A shard is written under a hidden temporary name in its folder and renamed when complete, so a
reader globbing ``*.tar`` never sees half a shard.

Reading opens each shard with webdataset's ``gopen`` (local paths, ``file:``, ``pipe:``, ``http(s)``...) and
walks the tar headers here: Python's :mod:`tarfile`, through which webdataset's iterator reads, decodes every
header field although a sample needs only the name, size, type and checksum, and was most of the pre-training
loader's time (``benchmarks/loader.py`` compares the two readers, rows (a) and (a')). Samples are grouped by
key as webdataset does (the name up to the first dot of its last path component), and ustar, GNU (long names)
and PAX archives read the same as through webdataset (``tests/test_shards.py``). A malformed sample or a truncated
or corrupt tar is logged with its shard, key and reason, counted in :class:`ReadStats`, and skipped; the stats
count the bytes read from the shard streams too.

A reader that needs one dataset and split (fine-tuning) opens only the shards that hold it, by the
``manifest.parquet`` curation writes beside the shards (:func:`shards_holding`).
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import re
import tarfile
import tokenize
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slp.cli_errors import file_problem
from slp.data.schema import POSE_DTYPE, InvalidSample, Sample, SampleMeta, validate_sample

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 2**20


@dataclass
class ShardInfo:
    path: str
    num_samples: int
    num_bytes: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def encode_sample(sample: Sample, *, validate: bool = True) -> dict[str, bytes]:
    """The members of one sample: ``pose.npy``, ``json`` and, for paired samples, ``txt``. ``validate=False``
    skips :func:`~slp.data.schema.validate_sample`, for a caller that has validated the sample (as float16)."""
    pose = np.ascontiguousarray(sample.pose, dtype=POSE_DTYPE)
    if validate:
        validate_sample(Sample(sample.key, pose, sample.meta))
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


def write_shard(path: str | Path, samples: Iterable[Sample], *, validate: bool = True) -> ShardInfo:
    """Write ``samples`` to the tar ``path`` atomically (temporary name, then rename); same input, same bytes.
    ``validate``: as for :func:`encode_sample`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    count = 0
    try:
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in samples:
                for ext, data in encode_sample(sample, validate=validate).items():
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
        *,
        validate: bool = True,
    ):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError("max_samples and max_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.index = start_index
        self.validate = validate  # as for encode_sample
        self.shards: list[ShardInfo] = []
        self._pending: list[Sample] = []
        self._pending_bytes = 0
        self._keys: set[str] = set()

    def write(self, sample: Sample) -> None:
        if sample.key in self._keys:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        members = encode_sample(sample, validate=self.validate)
        size = sum(len(v) + 1024 for v in members.values())  # + tar headers and padding
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
        self.shards.append(write_shard(path, self._pending, validate=False))  # write() validated each sample
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
#: What np.load raises on bytes that are not a readable ``.npy`` (and only on those, so a bug of ours still shows
#: its traceback): ValueError (a malformed header or too little data; UnicodeDecodeError is one), TypeError (a
#: descr naming no dtype), SyntaxError and tokenize.TokenError (a header that is not a Python literal: numpy's
#: Python 2 fallback tokenizes it), EOFError / OSError (the bytes end early), MemoryError (a header claiming an
#: array larger than memory: numpy allocates it before reading).
NPY_DECODE_ERRORS = (ValueError, TypeError, SyntaxError, tokenize.TokenError, EOFError, OSError, MemoryError)
#: What json.loads raises on bytes that are not a JSON document: ValueError (JSONDecodeError, UnicodeDecodeError,
#: an integer of more digits than Python converts), RecursionError (arrays nested deeper than the interpreter's
#: recursion limit).
JSON_DECODE_ERRORS = (ValueError, RecursionError)


def load_npy(data: bytes) -> np.ndarray:
    """A C-order ``.npy`` from bytes without np.load's generic header evaluation (a third of decode time); bytes
    that are not a readable ``.npy`` raise :class:`InvalidSample` with the reason."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise InvalidSample("pose.npy is not a .npy file")
    major = data[6]
    size_bytes = 2 if major == 1 else 4
    header_len = int.from_bytes(data[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    try:
        match = _NPY_HEADER.search(data[start : start + header_len])
        if match is None:  # Fortran order or an unusual header: let numpy handle it
            return np.load(io.BytesIO(data), allow_pickle=False)
        shape = tuple(int(x) for x in match.group(2).split(b",") if x.strip())
        return np.frombuffer(data, dtype=match.group(1).decode(), offset=start + header_len).reshape(shape)
    except NPY_DECODE_ERRORS as exc:
        raise InvalidSample(f"unreadable pose.npy ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    """An exception as one short line: its type and message (TokenError's message is a tuple)."""
    message = exc.args[0] if isinstance(exc, tokenize.TokenError) and exc.args else exc
    return " ".join(f"{type(exc).__name__}: {message}".split())


def decode_sample(raw: dict[str, Any]) -> Sample:
    """A webdataset sample dict (bytes per extension, ``__key__``) → validated :class:`Sample`; any member that
    does not decode is an :class:`InvalidSample` naming it and why."""
    key = raw.get("__key__", "?")
    if "__duplicate__" in raw:
        raise InvalidSample(f"two members with extension {raw['__duplicate__']!r}")
    missing = [m for m in ("pose.npy", "json") if m not in raw]
    if missing:
        raise InvalidSample(f"missing member(s) {missing}")
    try:
        data = json.loads(raw["json"].decode("utf-8"))
    except JSON_DECODE_ERRORS as exc:
        raise InvalidSample(f"unreadable json ({_reason(exc)})") from exc
    if not isinstance(data, dict):
        raise InvalidSample(f"json is a {type(data).__name__}, not an object")
    try:
        meta = SampleMeta.from_json(data)
    except TypeError as exc:  # a required field missing
        raise InvalidSample(f"json is not sample metadata ({exc})") from exc
    pose = load_npy(raw["pose.npy"])
    if pose.dtype != POSE_DTYPE:
        raise InvalidSample(f"pose dtype {pose.dtype}, expected {np.dtype(POSE_DTYPE)}")
    if meta.paired is True:
        if "txt" not in raw:
            raise InvalidSample("paired sample without txt")
        try:
            meta.text = raw["txt"].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSample(f"unreadable txt ({exc})") from exc
    sample = Sample(key=key, pose=pose, meta=meta)
    validate_sample(sample)  # the schema the writer keeps: types, ranges, finite values
    return sample


@dataclass
class ReadStats:
    """What a read produced and what it skipped (with the shard, key and reason of each skip)."""

    samples: int = 0
    rejected: int = 0  # malformed samples in intact shards
    truncated_shards: int = 0
    lost_to_truncation: int = 0  # incomplete samples at the cut of a truncated shard
    bytes_read: int = 0  # shard bytes read from the streams: tar headers and member data, padding included
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


class TarFormatError(ValueError):
    """A tar stream that ends early or holds a header that is not a tar header."""


_BLOCK = 512
_META_NAME = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")  # regular file ('7': contiguous file, read as regular by tarfile too)


def _header_number(field: bytes) -> int:
    """A numeric header field: NUL / space terminated octal, or GNU base-256 when the top bit is set."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<length> <key>=<value>\\n"`` records of a PAX extended header; :class:`TarFormatError` when they are not."""
    records, position = {}, 0
    try:
        while position < len(data) and data[position:position + 1] != b"\0":
            space = data.index(b" ", position)
            end = position + int(data[position:space])
            if end <= space:
                raise ValueError(f"record length {end - position} at byte {position}")
            key, _, value = data[space + 1 : end - 1].partition(b"=")
            records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
            position = end
        if "size" in records and int(records["size"]) < 0:
            raise ValueError(f"size {records['size']}")
    except ValueError as exc:  # no length, a length or size that is not a count, a key that is not UTF-8
        raise TarFormatError(f"unreadable PAX header ({exc})") from None
    return records


def tar_members(stream: BinaryIO, stats: ReadStats | None = None) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of every regular file of a tar stream, in archive order.

    Directories, links and PAX global headers are skipped; GNU long names and PAX ``path`` / ``size`` records
    apply to the next member. Raises :class:`TarFormatError` when the stream ends inside the archive or a
    header's checksum is wrong. The bytes read are added to ``stats.bytes_read`` as they are read (once per
    member: a counting wrapper around ``read`` would cost a Python call per read).
    """
    read = stream.read
    stats = stats if stats is not None else ReadStats()
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = read(_BLOCK)
        if len(header) < _BLOCK or header == _ZERO_BLOCK:
            stats.bytes_read += len(header)
            if header and header != _ZERO_BLOCK:
                raise TarFormatError("stream ends inside a tar header")
            return  # end-of-archive marker, or a stream cut at a member boundary (see _is_complete_tar)
        try:
            checksum = _header_number(header[148:156])
            size = _header_number(header[124:136])
        except ValueError:
            raise TarFormatError("not a tar header (unreadable number field)") from None
        # The checksum is the byte sum of the header with its own field read as spaces. Adler-32's low half is
        # 1 + that byte sum mod 65521: one C call instead of a byte sum in Python.
        byte_sum = checksum - 8 * 32 + sum(header[148:156])
        if zlib.adler32(header) & 0xFFFF != (1 + byte_sum) % 65521:
            raise TarFormatError("not a tar header (checksum mismatch)")
        kind = header[156:157]
        if kind in _REGULAR and "size" in pax:
            size = int(pax["size"])
        padded = -(-size // _BLOCK) * _BLOCK
        data = read(padded)
        stats.bytes_read += _BLOCK + len(data)
        if len(data) < padded:
            raise TarFormatError("stream ends inside a tar member")
        data = data[:size] if padded != size else data
        if kind in _REGULAR:
            name = long_name or pax.get("path")
            if name is None:
                name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                prefix = header[345:500].split(b"\0", 1)[0] if header[257:263] == b"ustar\0" else b""
                if prefix:
                    name = f"{prefix.decode('utf-8', 'surrogateescape')}/{name}"
            yield name, data
            long_name, pax = None, {}
        elif kind == b"L":  # GNU long name of the next member
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind == b"x":  # PAX extended header of the next member
            pax = _pax_records(data)
        else:  # directories, links, PAX global headers, GNU long link names: nothing to read
            long_name, pax = (long_name, pax) if kind in (b"g", b"K") else (None, {})


def tar_samples(members: Iterable[tuple[str, bytes]], url: str) -> Iterator[dict[str, Any]]:
    """Group consecutive members by key into webdataset sample dicts (``__key__``, ``__url__``, one entry per
    lower-cased extension); names without an extension and ``__meta__`` members are skipped, as in webdataset.
    A sample that repeats an extension is marked ``__duplicate__`` (webdataset stops the shard there; here
    :func:`decode_sample` rejects that one sample)."""
    sample: dict[str, Any] | None = None
    try:
        for name, data in members:
            slash = name.rfind("/") + 1
            dot = name.find(".", slash)
            if dot <= slash or name.startswith("__") and _META_NAME.match(name):
                continue
            key, extension = name[:dot], name[dot + 1 :].lower()
            if sample is None or key != sample["__key__"]:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            if extension in sample:
                sample["__duplicate__"] = extension
            sample[extension] = data
    except TarFormatError:
        if sample is not None:  # the members read before the damage: validation decides whether it is whole
            yield sample
        raise
    if sample is not None:
        yield sample


def iter_samples(urls: Iterable[str | Path], stats: ReadStats | None = None,
                 on_invalid: Callable[[dict[str, Any], InvalidSample], None] | None = None) -> Iterator[Sample]:
    """Stream validated samples from shards; malformed samples and truncated tars are logged, counted, skipped.
    ``on_invalid`` is also given each skipped sample's members (bytes per extension) and the reason, for a caller
    that looks into what the reader refuses (``slp-curate audit``)."""
    import webdataset as wds  # here, not at the top: it imports torch, which writing and checking shards do not need

    stats = stats if stats is not None else ReadStats()
    for url in map(str, urls):
        truncated = not _is_complete_tar(url)
        if truncated:
            stats.truncated_shards += 1
            stats.record(url, "", "truncated tar (no end-of-archive marker)")
        try:
            with wds.gopen(url, "rb") as stream:
                for raw in tar_samples(tar_members(stream, stats), url):
                    key = raw["__key__"]
                    try:
                        sample = decode_sample(raw)
                    except InvalidSample as exc:
                        if truncated:
                            stats.lost_to_truncation += 1
                        else:
                            stats.rejected += 1
                        stats.record(url, key, str(exc))
                        if on_invalid is not None:
                            on_invalid(raw, exc)
                        continue
                    stats.samples += 1
                    yield sample
        except (TarFormatError, OSError) as exc:
            if not truncated:
                stats.truncated_shards += 1
                stats.record(url, "", f"unreadable tar ({type(exc).__name__}: {exc})")


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
        ("pose_layout", pa.string()),
        ("pose_estimator", pa.string()),
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
        "pose_layout": meta.pose_layout,
        "pose_estimator": meta.pose_estimator,
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


def check_parquet(path: str | Path, columns: Sequence[str]) -> list[str]:
    """The column names of the Parquet file ``path``, which must hold ``columns``. ``ValueError`` naming the file
    when it is missing, a folder, unreadable, not a whole Parquet file (truncated, another format) or lacks one of
    ``columns`` (another tool's table)."""
    if problem := file_problem(path):
        raise ValueError(f"{path}: {problem}")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
    if missing := [c for c in columns if c not in names]:
        raise ValueError(f"{path}: lacks the column(s) {missing}")
    return names


def read_parquet(path: str | Path, columns: Sequence[str], optional: Sequence[str] = ()) -> pa.Table:
    """The ``columns`` of the Parquet file ``path``, and those of ``optional`` it has; ``ValueError`` as for
    :func:`check_parquet`, and for data pages that do not read."""
    names = check_parquet(path, columns)
    try:
        return pq.read_table(path, columns=[*columns, *(c for c in optional if c in names)])
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None


MANIFEST_NAME = "manifest.parquet"


def expand_shards(patterns: list[str]) -> list[str]:
    """The paths matching the glob ``patterns``, sorted, each once; no match at all is an error."""
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern)})
    if not paths:
        raise FileNotFoundError(f"no shard matches {patterns}")
    return paths


def find_manifest(shard_dir: str | Path) -> Path | None:
    """The manifest of the shards in ``shard_dir``: in that folder, or in its parent (``<build>/shards/*.tar``)."""
    folder = Path(shard_dir)
    for candidate in (folder / MANIFEST_NAME, folder.parent / MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    return None


def shards_holding(patterns: list[str], dataset: str, split: str) -> list[str]:
    """The shards matching ``patterns`` that hold samples of ``dataset`` (any dataset when empty) and ``split``.

    The manifest beside each folder of shards says which those are, so a downstream split, a few shards of a large
    build, costs the reads of its own shards only. Shards of a folder without a manifest, and shards its manifest
    does not list, are all kept: what they hold is known only once they are read. Only the manifest's ``shard``,
    ``dataset`` and ``split`` columns are read, batch by batch and as dictionaries (a few distinct strings over
    millions of rows): memory grows with the number of shards, not of samples.
    """
    by_folder: dict[str, list[str]] = {}
    for path in expand_shards(patterns):
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    kept: list[str] = []
    for folder, paths in by_folder.items():
        manifest = find_manifest(folder)
        if manifest is None:
            kept += paths
            continue
        holding: set[str] = set()
        listed: set[str] = set()
        columns = ["shard", "dataset", "split"]
        for batch in pq.ParquetFile(manifest, read_dictionary=columns).iter_batches(columns=columns):
            shard = batch.column("shard")
            wanted = pc.equal(batch.column("split"), split)
            if dataset:
                wanted = pc.and_(wanted, pc.equal(batch.column("dataset"), dataset))
            holding.update(pc.unique(shard.filter(wanted)).to_pylist())
            listed.update(pc.unique(shard).to_pylist())
        kept += [p for p in paths if os.path.basename(p) in holding or os.path.basename(p) not in listed]
    return sorted(kept)


def write_summary(path: str | Path, data: dict[str, Any]) -> None:
    """A machine-readable JSON summary (sorted keys, UTF-8), written atomically."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (its folder is created) through a hidden temporary file beside it (``.<name>.tmp``),
    flushed to disk and renamed when complete; the temporary file never outlives the call. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
