"""Readers of 133-point COCO-WholeBody pose sequences, whatever produced them.

Every reader returns a :class:`PoseSequence`: ``(T, 133, 3)`` float32 pixel x, y and confidence, plus fps and
frame size. A missing detection is confidence 0 with x = y = 0 — never NaN — so downstream code needs one
rule only. Formats (chosen by name, or from the file suffix with ``format="auto"``):

- ``pose``: ``.pose`` files of the pose-format library: COCO-WholeBody 133 (MMPose, OpenPifPaf, ``slp-curate
  extract``), MediaPipe Holistic (543 / 553 / 576 / 586 points) and OpenPose (137 points), the last two converted
  to COCO-WholeBody 133 (:mod:`slp.pose.convert`); other layouts are refused, naming what was found;
- ``openpose_json``: an OpenPose folder of per-frame ``*_keypoints.json`` (How2Sign's release), main signer,
  converted the same way; it records no fps or frame size;
- ``mmpose_json``: MMPose ``--save-predictions`` JSON (frames → instances → keypoints / keypoint_scores /
  bbox). It carries no frame size or fps. Each frame sits at its ``frame_id`` (0-based, as MMPose numbers
  them), so a frame missing from the list keeps its time: it becomes a frame without detections, as does a
  frame without instances;
- ``asl_signs_parquet``: a landmark file of the Kaggle ASL Signs release (one Parquet per clip, one row per
  MediaPipe Holistic landmark per frame: ``frame``, ``type``, ``landmark_index``, ``x``, ``y``; ``row_id`` and the
  relative depth ``z`` are not used), converted to COCO-WholeBody 133 like any MediaPipe Holistic 543 sequence.
  x and y are fractions of a frame size the file does not record (nor its fps): the ``width`` / ``height`` given
  turn them into pixels. A NaN coordinate, and a landmark without a row, is a missing point (the file has no
  confidences: every other point has confidence 1). The clip starts at its first ``frame`` number; a number the
  file skips keeps its time, as a frame without detections;
- ``npy`` / ``npz``: arrays ``(T, 133, 2|3)`` of real numbers (an ``.npz`` may also hold ``fps``, ``width``,
  ``height``); complex, boolean or text arrays are refused;
- ``pickle``: SLRT-style pickles ``name → (T, 133, 3)``, read only with ``allow_pickle=True`` since
  unpickling runs code from the file.

Meaning of fps and frame size: a value the file records (``.pose`` header and body, ``.npz`` arrays) is the
sequence's value: the coordinates are pixels of the video the estimator saw, at its frame rate. The ``fps`` /
``width`` / ``height`` a caller passes are only used for what the file does not record (a recorded 0 means
"unknown"); :attr:`PoseSequence.recorded` says which values came from the file, so a caller can compare them
with what its annotations say. A recorded value that is negative or not a number is a corrupt file.

Errors are :class:`PoseFormatError` (the message names the file); its subclasses say what kind of problem it is
(:attr:`PoseFormatError.reason`): no such file or sequence, a readable file in another keypoint layout, values
that are not real numbers, or anything else that makes the file unreadable.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slp.cli_errors import file_problem
from slp.config import is_int
from slp.pose.convert import (  # clean_keypoints: re-exported, the readers' missing-point rule
    COCO_WHOLEBODY,
    LAYOUT_COMPONENTS,
    LAYOUT_ESTIMATORS,
    MEDIAPIPE_PREFIX,
    OPENPOSE,
    clean_keypoints,
    pose_provenance,
    pose_to_coco_wholebody,
    read_openpose_folder,
    to_coco_wholebody,
)
from slp.pose.layout import NUM_WHOLEBODY_POINTS, wholebody_to_79

#: A detected point lying more than this fraction of the frame size outside the frame (x / width below -0.5 or
#: above 1.5, the same for y) is a failed detection, not a position: :func:`to_shard_pose` makes it missing.
#: Real estimators put points somewhat outside the frame (a hand leaving it, MediaPipe's extrapolated body,
#: legs below the frame edge: a quarter of the frame at most in ../shared/realdata), never this far.
OUTSIDE_MARGIN = 0.5
#: A frame number (MMPose frame_id, ASL Signs frame) beyond this many times the number of frames listed (plus a
#: constant) is a corrupt file: keeping the time of such a gap would need an array that large.
_MAX_GAP_FACTOR, _MAX_GAP_FRAMES = 10, 1000
GEOMETRY_FIELDS = ("fps", "width", "height")


class PoseFormatError(ValueError):
    """A pose file that cannot be read as a 133-point COCO-WholeBody sequence; the message names the file.

    ``reason`` is the curation reject reason of this kind of problem."""

    reason = "unreadable_pose"


class MissingPose(PoseFormatError):
    """No such file, or no sequence of that name in a collection file."""

    reason = "missing_pose_file"


class UnsupportedLayout(PoseFormatError):
    """A readable file whose keypoints are not the 133 COCO-WholeBody points (the message names what it holds)."""

    reason = "unsupported_layout"


class UnsupportedDtype(PoseFormatError):
    """An array whose values are not real numbers (complex, boolean, text)."""

    reason = "unsupported_dtype"


@dataclass
class PoseSequence:
    """A pose sequence in pixels: ``keypoints`` is ``(T, 133, 3)`` float32 (x, y, confidence)."""

    keypoints: np.ndarray
    fps: float
    width: int
    height: int
    source: str = ""
    recorded: frozenset[str] = field(default_factory=frozenset)  # of GEOMETRY_FIELDS: those the file recorded
    layout: str = COCO_WHOLEBODY  # the layout the file held, before conversion (slp.pose.convert.LAYOUTS)
    estimator: str = ""  # the estimator that made it, name and version, when known

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


def _recorded_number(value: Any, name: str, where: str) -> float | None:
    """A geometry value a file records: a finite number >= 0 (0 = unknown → None); anything else is corrupt."""
    array = np.asarray(value)
    if array.size != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise PoseFormatError(f"{where}: recorded {name} {value!r} is not a number")
    number = float(array.reshape(()))
    if not math.isfinite(number) or number < 0:
        raise PoseFormatError(f"{where}: recorded {name} {number} is not a positive number")
    return number or None


def _sequence(keypoints: np.ndarray, where: str, fmt: str, recorded: dict[str, float | None],
              fallback: dict[str, float | None]) -> PoseSequence:
    """The sequence with each of fps / width / height taken from the file when it records it, else from the
    caller (see the module docstring); an integer frame size and a finite positive fps are required."""
    values: dict[str, float] = {}
    for name in GEOMETRY_FIELDS:
        value = recorded.get(name)
        if value is None:
            value = fallback.get(name)
        if value is None:
            raise PoseFormatError(f"{where}: {fmt} files do not record the {name}; give it (the video's {name})")
        values[name] = value
    fps, width, height = (values[name] for name in GEOMETRY_FIELDS)
    if not (isinstance(fps, (int, float)) and 0 < fps < math.inf):
        raise PoseFormatError(f"{where}: fps {fps!r} is not a positive number")
    for name, size in (("width", width), ("height", height)):
        if not (isinstance(size, (int, float)) and size > 0 and float(size).is_integer()):
            raise PoseFormatError(f"{where}: frame {name} {size!r} is not a positive integer")
    return PoseSequence(keypoints, float(fps), int(width), int(height), where,
                        frozenset(name for name in GEOMETRY_FIELDS if recorded.get(name) is not None))


def _from_array(array: np.ndarray, where: str) -> np.ndarray:
    """``(T, 133, 2|3)`` real numbers → cleaned ``(T, 133, 3)`` keypoints."""
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise UnsupportedDtype(f"{where}: values of type {array.dtype}; keypoints must be real numbers "
                               f"(integer or floating point)")
    if array.ndim != 3 or array.shape[1] != NUM_WHOLEBODY_POINTS or array.shape[2] not in (2, 3):
        raise UnsupportedLayout(
            f"{where}: array of shape {array.shape} is not (T, {NUM_WHOLEBODY_POINTS}, 2|3) COCO-WholeBody keypoints"
        )
    if array.shape[2] == 2:  # coordinates only: every finite point counts as detected
        conf = np.isfinite(array).all(axis=-1).astype(np.float32)
        return clean_keypoints(array, conf)
    return clean_keypoints(array[..., :2], array[..., 2])


def read_pose_file(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """``.pose`` (pose-format) with the COCO-WholeBody 133 layout; person 0 of each frame."""
    from pose_format import Pose

    raw = path.read_bytes()
    try:
        pose = Pose.read(raw)
    except Exception as exc:  # pose-format raises bare struct / index errors on corrupt files
        raise PoseFormatError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})") from exc
    try:
        keypoints, layout = pose_to_coco_wholebody(pose)
    except ValueError as exc:  # a layout no converter knows, or a body that does not match its header
        raise UnsupportedLayout(f"{path}: {exc}") from None
    dims = pose.header.dimensions
    where = str(path)
    recorded = {"fps": _recorded_number(pose.body.fps, "fps", where),
                "width": _recorded_number(dims.width, "width", where),
                "height": _recorded_number(dims.height, "height", where)}
    seq = _sequence(keypoints, where, ".pose", recorded, {"fps": fps, "width": width, "height": height})
    provenance = pose_provenance(raw, layout)
    return replace(seq, layout=provenance.layout, estimator=provenance.estimator)


def read_openpose_json(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """An OpenPose folder of per-frame JSON files (How2Sign), converted to COCO-WholeBody 133."""
    try:
        keypoints = read_openpose_folder(path, width, height)
    except ValueError as exc:
        raise PoseFormatError(f"{path}: {exc}") from None
    seq = _sequence(keypoints, str(path), "OpenPose JSON", {}, {"fps": fps, "width": width, "height": height})
    return replace(seq, layout=OPENPOSE, estimator="openpose")


def _frame_positions(frames: list[dict], path: Path) -> list[int]:
    """Where each listed frame sits in time: its ``frame_id`` (0-based), or its position when none has one."""
    ids = [frame.get("frame_id") for frame in frames]
    if all(i is None for i in ids):
        return list(range(len(frames)))
    for i in ids:
        if not is_int(i) or i < 0:
            raise PoseFormatError(f"{path}: frame_id {i!r} is not an integer >= 0")
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise PoseFormatError(f"{path}: frame_id {twice} appears twice")
    _check_frame_span(max(ids), len(ids), f"{path}: frame_id {max(ids)}")
    return ids


def _check_frame_span(last_position: int, listed: int, described: str) -> None:
    """Frames sit at their numbers, so a gap keeps its time; a last position this far beyond the number of frames
    listed is a corrupt file (keeping such a gap would need an array that large). ``described`` names the file and
    the frame number."""
    if last_position >= _MAX_GAP_FACTOR * listed + _MAX_GAP_FRAMES:
        raise PoseFormatError(f"{described} with only {listed} frames listed (a corrupt file)")


def read_mmpose_json(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """MMPose ``--save-predictions`` output; frames without an instance, and frame ids the list skips, are
    frames without detections. With several people, the main signer is kept
    (:func:`slp.extract.tracking.main_track`: tracks across frames, judged in the ``width`` × ``height`` frame
    when given, else in the extent of the detections)."""
    from slp.extract.tracking import Detection, instance_box, main_track

    try:
        frames = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoseFormatError(f"{path}: not a JSON file ({exc})") from exc
    if isinstance(frames, dict) and "instance_info" in frames:  # MMPose's other dump layout
        frames = frames["instance_info"]
    if not isinstance(frames, list) or not all(isinstance(frame, dict) for frame in frames):
        raise PoseFormatError(f"{path}: expected a list of frame objects with 'instances' (MMPose predictions)")
    positions = _frame_positions(frames, path)
    people: list[list[Detection]] = [[] for _ in range(max(positions, default=-1) + 1)]
    for t, frame in sorted(zip(positions, frames), key=lambda pair: pair[0]):
        instances = frame.get("instances") or []
        try:
            if not isinstance(instances, list) or not all(isinstance(inst, dict) for inst in instances):
                raise TypeError("'instances' is not a list of objects")
            parsed = [(np.asarray(inst["keypoints"], dtype=np.float32),
                       np.asarray(inst["keypoint_scores"], dtype=np.float32), instance_box(inst))
                      for inst in instances]
        except (KeyError, TypeError, ValueError) as exc:
            raise PoseFormatError(f"{path}: frame {t} has no readable instance ({type(exc).__name__}: {exc})") from exc
        for xy, scores, box in parsed:
            if xy.shape != (NUM_WHOLEBODY_POINTS, 2) or scores.shape != (NUM_WHOLEBODY_POINTS,):
                raise UnsupportedLayout(
                    f"{path}: frame {t} has keypoints {xy.shape} / scores {scores.shape}, "
                    f"expected ({NUM_WHOLEBODY_POINTS}, 2) / ({NUM_WHOLEBODY_POINTS},) (COCO-WholeBody)"
                )
            keypoints = clean_keypoints(xy, scores)
            if keypoints[:, 2].any():
                people[t].append(Detection.from_keypoints(keypoints, box))
    out = main_track(people, width, height)
    seq = _sequence(out, str(path), "MMPose predictions JSON", {}, {"fps": fps, "width": width, "height": height})
    return replace(seq, estimator="mmpose")


#: Columns of an ASL Signs landmark file that the reader uses.
ASL_SIGNS_COLUMNS = ("frame", "type", "landmark_index", "x", "y")
#: The release's landmarks: MediaPipe Holistic's 33 pose, 468 face mesh and 21 + 21 hand points.
ASL_SIGNS_LAYOUT = f"{MEDIAPIPE_PREFIX}543"


def _landmark_types(layout: str) -> dict[str, tuple[int, int]]:
    types, first = {}, 0
    for name, count in LAYOUT_COMPONENTS[layout]:
        types[name.removesuffix("_LANDMARKS").lower()] = (first, count)
        first += count
    return types


#: Each ``type`` of an ASL Signs landmark file → (its first point in :data:`ASL_SIGNS_LAYOUT`, its number of
#: points): the layout's component names without ``_LANDMARKS``, lower case (``POSE_LANDMARKS`` → ``pose``,
#: ``LEFT_HAND_LANDMARKS`` → ``left_hand``).
ASL_SIGNS_TYPES: dict[str, tuple[int, int]] = _landmark_types(ASL_SIGNS_LAYOUT)


def read_asl_signs_parquet(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """A landmark file of the ASL Signs release (see the module docstring), converted to COCO-WholeBody 133 by
    :func:`slp.pose.convert.to_coco_wholebody`; ``width`` / ``height`` turn its fractions into pixels."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        missing = [name for name in ASL_SIGNS_COLUMNS if name not in names]
        if missing:
            raise UnsupportedLayout(f"{path}: columns {names} lack {missing}; an ASL Signs landmark file has one row "
                                    f"per landmark per frame with columns {list(ASL_SIGNS_COLUMNS)}")
        table = pq.read_table(path, columns=list(ASL_SIGNS_COLUMNS))
    except (pa.ArrowException, OSError) as exc:  # truncated (no footer), corrupt pages, not Parquet at all
        raise PoseFormatError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())})") from None
    _check_landmark_columns(table, path)
    types = ASL_SIGNS_TYPES
    type_names = table["type"].cast(pa.string())
    part = pc.index_in(type_names, value_set=pa.array(list(types)))
    if part.null_count:
        unknown = sorted(set(pc.filter(type_names, pc.is_null(part)).to_pylist()))
        raise UnsupportedLayout(f"{path}: landmark type(s) {unknown[:5]}; MediaPipe Holistic's are {sorted(types)}")
    part = part.to_numpy()
    first, count = (np.array([value[k] for value in types.values()]) for k in (0, 1))
    index = table["landmark_index"].to_numpy().astype(np.int64)
    frame = table["frame"].to_numpy().astype(np.int64)

    def row_name(row: int) -> str:
        return f"frame {frame[row]} {list(types)[part[row]]} landmark_index {index[row]}"

    outside = np.flatnonzero((index < 0) | (index >= count[part]))
    if outside.size:
        raise UnsupportedLayout(f"{path}: {row_name(outside[0])} outside its part's 0-{count[part[outside[0]]] - 1}")
    start = int(frame.min()) if frame.size else 0
    length = int(frame.max()) - start + 1 if frame.size else 0
    if frame.size:
        _check_frame_span(length - 1, len(np.unique(frame)), f"{path}: frame {frame.max()} (the clip starts at "
                                                              f"frame {start})")
    total = int(count.sum())
    cell = (frame - start) * total + first[part] + index  # the (frame, point) of each row, flattened
    ordered = np.sort(cell)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if twice.size:
        raise PoseFormatError(f"{path}: {row_name(np.flatnonzero(cell == twice[0])[0])} has more than one row")
    points = np.full((length * total, 2), np.nan)
    points[cell] = np.stack([pc.fill_null(table[name].cast(pa.float64()), math.nan).to_numpy()
                             for name in ("x", "y")], axis=-1)
    fractions = to_coco_wholebody(points.reshape(length, total, 2), None, ASL_SIGNS_LAYOUT)
    seq = _sequence(fractions, str(path), "ASL Signs landmark", {}, {"fps": fps, "width": width, "height": height})
    pixels = fractions * np.array([seq.width, seq.height, 1.0], dtype=np.float32)  # missing points stay (0, 0, 0)
    return replace(seq, keypoints=pixels, layout=ASL_SIGNS_LAYOUT, estimator=LAYOUT_ESTIMATORS[ASL_SIGNS_LAYOUT])


def _check_landmark_columns(table, path: Path) -> None:
    """The column types and non-null values an ASL Signs landmark file needs (null coordinates are missing points)."""
    import pyarrow as pa

    schema = table.schema
    for name in ("frame", "landmark_index"):
        if not pa.types.is_integer(schema.field(name).type):
            raise PoseFormatError(f"{path}: column {name} holds {schema.field(name).type}, expected integers")
    for name in ("x", "y"):
        if not (pa.types.is_floating(schema.field(name).type) or pa.types.is_integer(schema.field(name).type)):
            raise UnsupportedDtype(f"{path}: column {name} holds {schema.field(name).type}; coordinates must be "
                                   f"real numbers")
    kind = schema.field("type").type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise PoseFormatError(f"{path}: column type holds {kind}, expected text (face, left_hand, pose, right_hand)")
    for name in ("frame", "type", "landmark_index"):
        if table[name].null_count:
            raise PoseFormatError(f"{path}: {table[name].null_count} row(s) without a {name}")


def read_npy(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PoseFormatError(f"{path}: not a plain numpy array ({exc})") from exc
    if not isinstance(array, np.ndarray):  # np.load opens an .npz archive whatever its name
        raise PoseFormatError(f"{path}: an .npz archive, not an .npy array")
    return _sequence(_from_array(array, str(path)), str(path), ".npy", {}, {"fps": fps, "width": width,
                                                                               "height": height})


def read_npz(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise PoseFormatError(f"{path}: an .npy array, not an .npz archive")
            keys = [k for k in ("keypoints", "pose", "arr_0") if k in data]
            if not keys:
                raise PoseFormatError(f"{path}: no 'keypoints' array among {sorted(data.keys())}")
            array = data[keys[0]]
            recorded = {k: _recorded_number(data[k], k, where) for k in GEOMETRY_FIELDS if k in data}
    except PoseFormatError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise PoseFormatError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    return _sequence(_from_array(array, where), where, ".npz (without fps / width / height arrays)", recorded,
                     {"fps": fps, "width": width, "height": height})


def read_pickle_collection(path: str | Path, *, allow_pickle: bool) -> dict[str, Any]:
    """An SLRT-style pickle ``name → (T, 133, 3)``; unpickling runs code, hence the explicit opt-in."""
    path = Path(path)
    if not allow_pickle:
        raise PoseFormatError(
            f"{path}: pickles can run arbitrary code when loaded; read them only from sources you trust, "
            f"with allow_pickle=True (curation config: poses.allow_pickle: true)"
        )
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - opted in above
    except Exception as exc:  # a corrupt pickle raises whatever the unpickler trips on
        raise PoseFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise PoseFormatError(f"{path}: expected a dict name → (T, 133, 3) array, got {type(data).__name__}")
    return data


def collection_sequence(collection: dict[str, Any], key: str, path: str | Path, *, fps=None, width=None,
                        height=None) -> PoseSequence:
    """Sequence ``key`` of a pickle collection; collections record no fps or frame size, so they are given."""
    where = f"{path}:{key}"
    if key not in collection:
        raise MissingPose(f"{path}: no sequence named {key!r} in this collection")
    try:
        array = np.asarray(collection[key])
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise UnsupportedLayout(f"{where}: not an array of keypoints ({exc})") from exc
    return _sequence(_from_array(array, where), where, "pickle", {}, {"fps": fps, "width": width, "height": height})


_READERS: dict[str, Callable[..., PoseSequence]] = {
    "pose": read_pose_file,
    "mmpose_json": read_mmpose_json,
    "npy": read_npy,
    "npz": read_npz,
    "openpose_json": read_openpose_json,
    "asl_signs_parquet": read_asl_signs_parquet,
}
_SUFFIX_FORMATS = {".pose": "pose", ".json": "mmpose_json", ".npy": "npy", ".npz": "npz",
                   ".parquet": "asl_signs_parquet"}
POSE_FORMATS: tuple[str, ...] = (*_READERS, "pickle")


def format_for_path(path: str | Path) -> str:
    """The reader format of a file from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return "pickle"
    if suffix not in _SUFFIX_FORMATS:
        raise PoseFormatError(f"{path}: unknown pose file suffix {suffix!r}; known: {sorted(_SUFFIX_FORMATS)}")
    return _SUFFIX_FORMATS[suffix]


def read_pose(
    path: str | Path,
    format: str = "auto",
    *,
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    allow_pickle: bool = False,
    key: str | None = None,
) -> PoseSequence:
    """Read one pose sequence; ``fps`` / ``width`` / ``height`` serve where the file does not record them, ``key``
    selects a sequence inside a pickle collection (``allow_pickle`` needed)."""
    path = Path(path)
    if format == "openpose_json":  # a folder of per-frame files
        if not path.is_dir():
            raise MissingPose(f"{path}: no such OpenPose folder")
        return read_openpose_json(path, fps, width, height)
    if problem := file_problem(path):
        raise MissingPose(f"{path}: {problem}")
    fmt = format_for_path(path) if format == "auto" else format
    try:
        if fmt == "pickle":
            if key is None:
                raise PoseFormatError(f"{path}: a pickle collection needs the key of the sequence to read")
            return collection_sequence(read_pickle_collection(path, allow_pickle=allow_pickle), key, path, fps=fps,
                                       width=width, height=height)
        if fmt not in _READERS:
            raise PoseFormatError(f"{path}: unknown pose format {fmt!r}; known: {sorted(POSE_FORMATS)}")
        return _READERS[fmt](path, fps, width, height)
    except OSError as exc:  # permissions, I/O errors: a file the user named that cannot be read
        raise PoseFormatError(f"{path}: {exc.strerror or exc}") from None


def shard_pose_and_outside(seq: PoseSequence) -> tuple[np.ndarray, int]:
    """The 79 kept points as float16 ``(T, 79, 3)`` (x / width, y / height, confidence; missing → 0, 0, 0) and
    the number of detected points made missing for lying more than :data:`OUTSIDE_MARGIN` outside the frame."""
    kept = wholebody_to_79(seq.keypoints).astype(np.float32)
    out = kept / np.array([seq.width, seq.height, 1.0], dtype=np.float32)
    detected = kept[..., 2] > 0
    outside = detected & ((out[..., :2] < -OUTSIDE_MARGIN) | (out[..., :2] > 1 + OUTSIDE_MARGIN)).any(axis=-1)
    out[~detected | outside] = 0.0
    return out.astype(np.float16), int(outside.sum())


def to_shard_pose(seq: PoseSequence) -> np.ndarray:
    """The 79 kept points as float16 ``(T, 79, 3)``: see :func:`shard_pose_and_outside`."""
    return shard_pose_and_outside(seq)[0]
