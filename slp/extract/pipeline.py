"""Videos → one COCO-WholeBody 133 ``.pose`` file per video, on one machine or on a Ray cluster.

Per video (:func:`extract_video`, the same code on every engine): decode with PyAV, run the backend on batches of
frames, associate people across frames and keep the main signer (:mod:`slp.extract.tracking`), write
``<out>/<key>.pose`` (:func:`pose_file_bytes`). A video's key is its path relative to the video folder (or the
list's folder, or the video's own folder) without the suffix, so ``DIR/a/b.mp4`` becomes ``OUT/a/b.pose``.

The ``.pose`` file is pose-format v0.2, one person, the four components ``BODY(23) FACE(68) LEFT_HAND(21)
RIGHT_HAND(21)`` with ``XYC`` points (what :func:`slp.pose.readers.read_pose` and the curation adapters read),
the video's fps (float32) and frame size in the header, missing points as (0, 0, confidence 0), followed by a
provenance trailer (:func:`slp.pose.convert.provenance_trailer`: the source layout, the estimator's name and
version, and the video's absolute path, which renders draw the points on; pose-format headers have no field for
them, and pose-format's reader stops before it). The bytes depend only on the video (its path included) and the
backend: the same on every engine and worker count.

A run is resumable: a video whose ``.pose`` exists is skipped; a file is written under a hidden temporary name
(``.<name>.pose.tmp``, :func:`slp.data.shards.write_bytes_atomic`) and renamed when complete, so a killed run
leaves no partial ``.pose`` (the next run removes its temporaries). Failed videos (:data:`FAILURE_REASONS`) get
no file, are listed in ``failures.jsonl`` and are tried again by the next run. ``summary.json`` counts the videos
and frames and the rates of the run, and holds a record (video, frames, estimator) of every ``.pose`` in the
output folder, those of earlier runs included (:func:`run_extraction`). Only one run at a time may write an output
folder.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slp.cli_errors import file_problem
from slp.data.shards import write_bytes_atomic, write_summary
from slp.extract.backends import Backend, BackendError, BackendSpec, BackendUnavailable
from slp.extract.tracking import Detection, main_track
from slp.pose.convert import Provenance, provenance_trailer
from slp.pose.export import Component, pose_bytes
from slp.pose.layout import COCO_WHOLEBODY_POINT_NAMES, HAND_TREE, INNER_LIPS_LOOP, PART_COLORS
from slp.threads import set_process_threads

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".mts", ".ts")
#: Why a video has no ``.pose``: PyAV cannot read it, it decodes to no frame, nobody is detected in it, the
#: estimator failed on it (its worker died, say), or anything else went wrong (the detail holds the traceback).
FAILURE_REASONS = ("unreadable_video", "zero_frames", "no_person", "backend_error", "processing_error")
FAILURES_LOG = "failures.jsonl"
SUMMARY = "summary.json"
TEMP_SUFFIX = ".pose.tmp"  # of the hidden temporary .pose files (write_bytes_atomic's ".<name>.tmp")
DEFAULT_BATCH_SIZE = 16
# COCO-WholeBody's body and feet skeleton (pairs of the 23 BODY points).
_BODY_LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
               (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (15, 17), (15, 18), (15, 19),
               (16, 20), (16, 21), (16, 22))


@dataclass(frozen=True)
class VideoJob:
    """A video to extract and the key of its output (``<out>/<key>.pose``)."""

    path: str
    key: str


@dataclass
class VideoResult:
    key: str
    video: str
    status: str  # "extracted" or "failed"
    frames: int = 0
    reason: str = ""  # one of FAILURE_REASONS when failed
    detail: str = ""
    estimator: str = ""


@dataclass
class VideoListing:
    """What :func:`list_videos` found besides the videos: the kind of source it was given (``video``: one video
    file, ``folder``, ``list``: a list file) and the subfolders of a folder it could not read, each
    ``"<path> (<reason>)"``: their videos are skipped, the rest is listed."""

    kind: str = ""
    unreadable_folders: list[str] = field(default_factory=list)


def source_kind(source: str | Path) -> str:
    """How :func:`list_videos` reads ``source``: ``folder`` (a folder), ``video`` (a path with a video suffix,
    :data:`VIDEO_SUFFIXES`) or ``list`` (anything else: a text file of paths)."""
    source = Path(source)
    if source.is_dir():
        return "folder"
    return "video" if source.suffix.lower() in VIDEO_SUFFIXES else "list"


def _folder_videos(root: Path, listing: VideoListing) -> list[Path]:
    """The videos under ``root`` (recursively). A subfolder that cannot be read is noted in ``listing`` and
    skipped; ``root`` itself unreadable is a ``ValueError`` (os.walk would otherwise yield nothing: "0 videos")."""
    def unreadable(error: OSError) -> None:
        reason = error.strerror or str(error)
        if Path(error.filename) == root:
            raise ValueError(f"{root}: cannot read the folder ({reason})")
        listing.unreadable_folders.append(f"{error.filename} ({reason})")

    return [Path(folder) / name for folder, _, names in os.walk(root, onerror=unreadable) for name in names
            if Path(name).suffix.lower() in VIDEO_SUFFIXES]


def _listed_videos(source: Path) -> list[Path]:
    """The paths of a list file: one a line, relative to its folder; blank lines and ``#`` comments skipped. A
    listed path that does not exist is listed (its extraction fails, the run goes on); a listed folder is an
    error."""
    if not source.exists():
        raise ValueError(f"{source}: no such video folder or list file")
    if problem := file_problem(source):
        raise ValueError(f"{source}: {problem}")
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not a list file: not UTF-8 text ({exc.reason} at byte {exc.start}); a video "
                         f"needs one of the suffixes {', '.join(VIDEO_SUFFIXES)}") from None
    except OSError as exc:
        raise ValueError(f"{source}: cannot read the list file ({exc.strerror or exc})") from None
    paths = []
    for number, line in enumerate(text.splitlines(), start=1):
        if (line := line.strip()) and not line.startswith("#"):
            path = source.parent / line
            if path.is_dir():  # its videos are not listed: a mistake of the list, not a video that fails
                raise ValueError(f"{source}:{number}: {path} is a folder; list its videos, one a line, or give the "
                                 f"folder as --videos")
            paths.append(path)
    return paths


def list_videos(source: str | Path, listing: VideoListing | None = None) -> list[VideoJob]:
    """The videos of ``source``, sorted by key: one video file, a folder (searched recursively for
    :data:`VIDEO_SUFFIXES`) or a list file (one path a line, relative to the list's folder; blank lines and ``#``
    comments skipped); :func:`source_kind` decides which by the path. ``listing`` receives the kind and the
    subfolders that could not be read.

    Raises ``ValueError`` for a missing or unreadable source, a list file that is not UTF-8 text, and two videos
    with the same key (``a.mp4`` and ``a.mkv``).
    """
    source = Path(source)
    listing = listing if listing is not None else VideoListing()
    listing.kind = source_kind(source)
    if listing.kind == "folder":
        root, paths = source, _folder_videos(source, listing)
    elif listing.kind == "video":
        if problem := file_problem(source):
            raise ValueError(f"{source}: {problem}")
        root, paths = source.parent, [source]
    else:
        root, paths = source.parent, _listed_videos(source)
    jobs: dict[str, VideoJob] = {}
    for path in paths:
        try:
            relative = path.resolve().relative_to(root.resolve())
        except ValueError:  # a listed video outside the list's folder: its name alone
            relative = Path(path.name)
        key = relative.with_suffix("").as_posix()
        if key in jobs:
            raise ValueError(f"{jobs[key].path} and {path} would both be written to {key}.pose")
        jobs[key] = VideoJob(str(path), key)
    return [jobs[key] for key in sorted(jobs)]


def output_path(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / f"{key}.pose"


def _coco_wholebody_components() -> list[Component]:
    """The four COCO-WholeBody 133 components (the point names of MMPose's ``.pose`` files), with the skeleton as
    limbs coloured by part."""
    names = COCO_WHOLEBODY_POINT_NAMES
    face_limbs = ([(i, i + 1) for i in range(16)] + [(i, i + 1) for i in range(17, 21)]
                  + [(i, i + 1) for i in range(22, 26)] + [(i, i + 1) for i in range(27, 35)]
                  + [(36 + i, 36 + (i + 1) % 6) for i in range(6)] + [(42 + i, 42 + (i + 1) % 6) for i in range(6)]
                  + [(48 + i, 48 + (i + 1) % 12) for i in range(12)] + list(INNER_LIPS_LOOP))
    parts = [("BODY", names[:23], _BODY_LIMBS, "body"), ("FACE", names[23:91], face_limbs, "face"),
             ("LEFT_HAND", names[91:112], HAND_TREE, "left_hand"),
             ("RIGHT_HAND", names[112:133], HAND_TREE, "right_hand")]
    return [Component(name, tuple(points), tuple(limbs), PART_COLORS[color]) for name, points, limbs, color in parts]


def pose_file_bytes(keypoints: np.ndarray, fps: float, width: int, height: int, provenance: Provenance) -> bytes:
    """The ``.pose`` bytes of ``(T, 133, 3)`` pixel keypoints (see the module docstring)."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    return (pose_bytes(keypoints[..., :2], keypoints[..., 2], fps, width, height, _coco_wholebody_components())
            + provenance_trailer(provenance))


def _failed(job: VideoJob, reason: str, detail: str, frames: int = 0, estimator: str = "") -> VideoResult:
    return VideoResult(job.key, job.path, "failed", frames, reason, detail, estimator)


def extract_video(job: VideoJob, backend: Backend, out_dir: str | Path,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> VideoResult:
    """Extract one video with a loaded backend and write its ``.pose``; a problem of this video (unreadable,
    no frame, nobody in it, the estimator failing on it) is a failed :class:`VideoResult`, not an exception."""
    import av

    estimator = backend.estimator
    try:
        container = av.open(job.path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return _failed(job, "unreadable_video", f"{type(exc).__name__}: {exc}", estimator=estimator)
    frames: list[list[Detection]] = []
    size = (0, 0)
    try:
        with container:
            if not container.streams.video:
                return _failed(job, "unreadable_video", "no video stream", estimator=estimator)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0  # 0: unknown, as the .pose readers take it
            backend.start_video()
            batch: list[np.ndarray] = []
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")
                size = (image.shape[1], image.shape[0])
                batch.append(image)
                if len(batch) == batch_size:
                    frames += backend.predict(batch)
                    batch = []
            if batch:
                frames += backend.predict(batch)
    except (av.error.FFmpegError, OSError) as exc:
        return _failed(job, "unreadable_video", f"after {len(frames)} frames: {type(exc).__name__}: {exc}",
                       len(frames), estimator)
    except BackendError as exc:
        return _failed(job, "backend_error", str(exc), len(frames), estimator)
    if not frames:
        return _failed(job, "zero_frames", "the video decodes to no frame", estimator=estimator)
    if not any(frames):
        return _failed(job, "no_person", f"nobody detected in {len(frames)} frames", len(frames), estimator)
    keypoints = main_track(frames, *size)
    write_bytes_atomic(output_path(out_dir, job.key),
                       pose_file_bytes(keypoints, fps, size[0], size[1],
                                       Provenance(backend.layout, estimator, os.path.abspath(job.path))))
    return VideoResult(job.key, job.path, "extracted", len(frames), estimator=estimator)


class VideoExtractor:
    """One backend, built and loaded on first use, extracting videos one after another: what each local worker
    process and each Ray actor holds."""

    def __init__(self, spec: BackendSpec, out_dir: str | Path, batch_size: int = DEFAULT_BATCH_SIZE):
        self.spec, self.out_dir, self.batch_size = spec, str(out_dir), batch_size
        self.backend: Backend | None = None

    def load(self) -> None:
        if self.backend is None:
            backend = self.spec.build()
            backend.load()
            self.backend = backend

    def __call__(self, job: VideoJob) -> VideoResult:
        self.load()
        try:
            return extract_video(job, self.backend, self.out_dir, self.batch_size)
        except BackendUnavailable:
            raise
        except Exception as exc:  # one video's unexpected failure is logged with its traceback, the run goes on
            return _failed(job, "processing_error", "".join(traceback.format_exception(exc)).strip(),
                           estimator=self.backend.estimator)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


_WORKER: VideoExtractor | None = None


def _worker_init(spec: BackendSpec, out_dir: str, batch_size: int, workers: int) -> None:
    global _WORKER
    set_process_threads(workers)
    _WORKER = VideoExtractor(spec, out_dir, batch_size)


def _worker_extract(job: VideoJob) -> VideoResult:
    return _WORKER(job)


def iter_local(jobs: list[VideoJob], spec: BackendSpec, out_dir: str | Path, batch_size: int = DEFAULT_BATCH_SIZE,
               workers: int = 1) -> Iterator[VideoResult]:
    """Results as videos finish: in this process (``workers=1``) or in a pool of worker processes, each with its own
    backend (spawned: estimators' thread pools and CUDA do not survive a fork)."""
    if not jobs:
        return
    if workers <= 1:
        extractor = VideoExtractor(spec, out_dir, batch_size)
        try:
            for job in jobs:
                yield extractor(job)
        finally:
            extractor.close()
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    workers = min(workers, len(jobs))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                             initargs=(spec, str(out_dir), batch_size, workers)) as pool:
        pending = iter(jobs)
        running = {pool.submit(_worker_extract, job) for job in _take(pending, 2 * workers)}
        try:
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                running |= {pool.submit(_worker_extract, job) for job in _take(pending, len(done))}
        finally:
            for future in running:
                future.cancel()


def _take(iterator: Iterator[VideoJob], n: int) -> list[VideoJob]:
    return list(itertools.islice(iterator, n))


def remove_temporaries(out_dir: str | Path) -> int:
    """Delete the temporary files a killed run left (hidden ``*.pose-tmp``); returns how many."""
    removed = 0
    for path in Path(out_dir).rglob(f".*{TEMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _earlier_records(out_dir: Path) -> dict[str, dict]:
    """The per-file records (``files``) of the summary an earlier run left in ``out_dir``; {} when there is none or
    it is not one of ours, and the files are then read back instead (:func:`_pose_record`)."""
    try:
        earlier = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no summary yet (a first or killed run), or not JSON (ValueError: bad bytes)
        return {}
    files = earlier.get("files") if isinstance(earlier, dict) else None
    if not isinstance(files, dict):
        return {}
    return {key: record for key, record in files.items() if isinstance(record, dict)
            and isinstance(record.get("frames"), int) and isinstance(record.get("estimator"), str)
            and isinstance(record.get("video"), str)}


def _pose_record(path: Path, video: str) -> dict | None:
    """The record of a ``.pose`` an earlier run wrote, from the file itself (None when it does not read back)."""
    from slp.pose.readers import PoseFormatError, read_pose

    try:
        seq = read_pose(path)
    except PoseFormatError:
        return None
    return {"video": video, "frames": seq.num_frames, "estimator": seq.estimator}


def run_extraction(source_jobs: Iterable[VideoJob], out_dir: str | Path, spec: BackendSpec, *, engine: str = "local",
                   workers: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, ray_address: str | None = None,
                   gpus_per_worker: float | None = None, progress: bool = True,
                   unreadable_folders: Sequence[str] = ()) -> dict:
    """Extract every video of ``source_jobs`` without a ``.pose`` in ``out_dir`` yet, on the ``local`` engine or
    ``ray`` (:mod:`slp.extract.ray_engine`); writes ``failures.jsonl`` and ``summary.json`` and returns the summary.

    The summary counts this run (``extracted``, ``failed``, ``frames``: the frames it decoded, and the rates) and
    every ``.pose`` in ``out_dir`` (``files``: key → video, frames, estimator; ``pose_files``, ``pose_frames``),
    those of earlier runs included: their records are carried over from the earlier summary, or read back from
    the files when it lacks them (a killed run). A ``.pose`` of a video to extract that does not read back is
    extracted again; one of no such video is listed in ``unreadable_pose_files``. ``unreadable_folders`` (of
    :class:`VideoListing`) are recorded in the summary.

    Raises :class:`BackendUnavailable` when the estimator cannot run here.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = list(source_jobs)
    spec.build()  # an unknown backend fails here, before any worker starts
    temporaries = remove_temporaries(out_dir)
    videos = {job.key: job.path for job in jobs}
    earlier = _earlier_records(out_dir)
    files: dict[str, dict] = {}
    unreadable: set[str] = set()
    for path in out_dir.rglob("*.pose"):
        key = path.relative_to(out_dir).with_suffix("").as_posix()
        record = earlier.get(key) or _pose_record(path, videos.get(key, ""))
        if record is None:
            unreadable.add(key)
        else:
            files[key] = record
    already_done = [job.key for job in jobs if job.key in files]
    todo = [job for job in jobs if job.key not in files]
    if engine == "local":
        results = iter_local(todo, spec, out_dir, batch_size, workers)
    elif engine == "ray":
        from slp.extract.ray_engine import iter_ray

        results = iter_ray(todo, spec, out_dir, batch_size, workers, address=ray_address,
                           gpus_per_worker=gpus_per_worker)
    else:
        raise ValueError(f"unknown engine {engine!r}: local or ray")

    from tqdm import tqdm

    start = time.perf_counter()
    done: list[VideoResult] = []
    frames = 0
    with tqdm(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for result in results:
            done.append(result)
            frames += result.frames
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{len(done) / elapsed:.2f} videos/s, {frames / elapsed:.1f} frames/s", refresh=False)
            bar.update()
    seconds = time.perf_counter() - start
    failures = sorted((r for r in done if r.status == "failed"), key=lambda r: r.key)
    write_bytes_atomic(out_dir / FAILURES_LOG,
                       "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in failures).encode("utf-8"))
    extracted = [r for r in done if r.status == "extracted"]
    files.update((r.key, {"video": r.video, "frames": r.frames, "estimator": r.estimator}) for r in extracted)
    summary = {
        "backend": spec.name,
        "estimators": sorted({r.estimator for r in done if r.estimator}
                             | {f["estimator"] for f in files.values() if f["estimator"]}),
        "engine": engine,
        "workers": workers,
        "videos": len(jobs),
        "already_done": len(already_done),
        "already_done_frames": sum(files[key]["frames"] for key in already_done),
        "extracted": len(extracted),
        "failed": len(failures),
        "failures_by_reason": dict(sorted(Counter(r.reason for r in failures).items())),
        "frames": frames,
        "extracted_frames": sum(r.frames for r in extracted),
        "seconds": round(seconds, 3),
        "videos_per_second": round(len(done) / seconds, 3) if seconds > 0 else 0.0,
        "frames_per_second": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "temporaries_removed": temporaries,
        "pose_files": len(files),
        "pose_frames": sum(f["frames"] for f in files.values()),
        "files": dict(sorted(files.items())),
        "unreadable_pose_files": sorted(unreadable - files.keys()),
        "unreadable_folders": list(unreadable_folders),
    }
    write_summary(out_dir / SUMMARY, summary)
    return summary
