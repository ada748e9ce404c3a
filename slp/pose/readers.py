"""Readers of 133-point COCO-WholeBody pose sequences, whatever produced them.

Every reader returns a :class:`PoseSequence`: ``(T, 133, 3)`` float32 pixel x, y and confidence, plus fps and
frame size. A missing detection is confidence 0 with x = y = 0 — never NaN — so downstream code needs one
rule only. Formats (chosen by name, or from the file suffix with ``format="auto"``):

- ``pose``: ``.pose`` files of the pose-format library with the COCO-WholeBody 133 layout (MMPose,
  OpenPifPaf); MediaPipe, OpenPose and other layouts are refused, naming what was found;
- ``mmpose_json``: MMPose ``--save-predictions`` JSON (frames → instances → keypoints / keypoint_scores /
  bbox). It carries no frame size or fps: pass them;
- ``npy`` / ``npz``: arrays ``(T, 133, 2|3)`` (an ``.npz`` may also hold ``fps``, ``width``, ``height``);
- ``pickle``: SLRT-style pickles ``name → (T, 133, 3)``, read only with ``allow_pickle=True`` since
  unpickling runs code from the file.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slp.pose.layout import NUM_WHOLEBODY_POINTS, wholebody_to_79

#: Components of a COCO-WholeBody 133 ``.pose`` file, in order, with their point counts.
WHOLEBODY_POSE_COMPONENTS: tuple[tuple[str, int], ...] = (
    ("BODY", 23), ("FACE", 68), ("LEFT_HAND", 21), ("RIGHT_HAND", 21)
)


#: Recognisable other layouts, by their first component's name, to say what a refused file holds.
_KNOWN_LAYOUTS = {
    "POSE_LANDMARKS": "MediaPipe Holistic",
    "pose_keypoints_2d": "OpenPose",
    "BODY_135": "OpenPose BODY_135",
}


class PoseFormatError(ValueError):
    """A pose file that cannot be read as a 133-point COCO-WholeBody sequence; the message names the file."""


@dataclass
class PoseSequence:
    """A pose sequence in pixels: ``keypoints`` is ``(T, 133, 3)`` float32 (x, y, confidence)."""

    keypoints: np.ndarray
    fps: float
    width: int
    height: int
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


def clean_keypoints(xy: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Stack ``(T, N, 2)`` coordinates and ``(T, N)`` confidences into ``(T, N, 3)`` float32 with the missing rule.

    A point is missing when its confidence is not positive or any value is non-finite; missing points become
    ``(0, 0, 0)``. Confidences above 1 (MMPose's heatmap scores reach 1.06) are clipped to 1 so they can serve as
    loss weights.
    """
    xy = np.asarray(xy, dtype=np.float32)
    conf = np.asarray(confidence, dtype=np.float32)
    valid = (conf > 0) & np.isfinite(conf) & np.isfinite(xy).all(axis=-1)
    out = np.zeros(xy.shape[:-1] + (3,), dtype=np.float32)
    out[..., :2] = np.where(valid[..., None], xy, 0.0)
    out[..., 2] = np.where(valid, np.clip(conf, 0.0, 1.0), 0.0)
    return out


def _sized_sequence(keypoints: np.ndarray, path: Path, fmt: str, fps, width, height, source: str = "") -> PoseSequence:
    """A sequence from a format that does not record fps / frame size: the caller must give them."""
    for name, value in (("fps", fps), ("width", width), ("height", height)):
        if value is None:
            raise PoseFormatError(f"{path}: {fmt} files do not record the {name}; pass {name}=… (from the video)")
    return PoseSequence(keypoints, float(fps), int(width), int(height), source or str(path))


def _check_points(array: np.ndarray, path: Path) -> None:
    if array.ndim != 3 or array.shape[1] != NUM_WHOLEBODY_POINTS or array.shape[2] not in (2, 3):
        raise PoseFormatError(
            f"{path}: array of shape {array.shape} is not (T, {NUM_WHOLEBODY_POINTS}, 2|3) COCO-WholeBody keypoints"
        )


def _from_array(array: np.ndarray, path: Path) -> np.ndarray:
    _check_points(array, path)
    if array.shape[2] == 2:  # coordinates only: every finite point counts as detected
        conf = np.isfinite(array).all(axis=-1).astype(np.float32)
        return clean_keypoints(array, conf)
    return clean_keypoints(array[..., :2], array[..., 2])


def read_pose_file(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """``.pose`` (pose-format) with the COCO-WholeBody 133 layout; person 0 of each frame."""
    from pose_format import Pose

    try:
        pose = Pose.read(path.read_bytes())
    except Exception as exc:  # pose-format raises bare struct / index errors on corrupt files
        raise PoseFormatError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})") from exc
    found = tuple((c.name, len(c.points)) for c in pose.header.components)
    if found != WHOLEBODY_POSE_COMPONENTS:
        total = sum(n for _, n in found)
        described = ", ".join(f"{name}({n})" for name, n in found)
        kind = _KNOWN_LAYOUTS.get(found[0][0] if found else "", "unknown")
        raise PoseFormatError(
            f"{path}: {kind} layout {described} ({total} points) is not COCO-WholeBody 133 "
            f"(BODY(23), FACE(68), LEFT_HAND(21), RIGHT_HAND(21)); convert it with a 133-point estimator"
        )
    data = np.ma.getdata(pose.body.data)[:, 0, :, :2]
    mask = np.ma.getmaskarray(pose.body.data)[:, 0, :, :2].any(axis=-1)
    conf = np.where(mask, 0.0, np.asarray(pose.body.confidence)[:, 0])
    dims = pose.header.dimensions
    return PoseSequence(
        keypoints=clean_keypoints(data, conf),
        fps=float(fps if fps is not None else pose.body.fps),
        width=int(width if width is not None else dims.width),
        height=int(height if height is not None else dims.height),
        source=str(path),
    )


def _main_instance(instances: list[dict], previous_center: np.ndarray | None) -> dict:
    """The signer among several detections: the largest box weighted by its score, favouring continuity.

    Signers face the camera and fill the frame, so area × score picks them; a bystander of similar size is
    told apart by staying close to the previous frame's choice (the score is divided by 1 + the centre shift
    in box widths).
    """

    def merit(inst: dict) -> float:
        x1, y1, x2, y2 = np.asarray(inst.get("bbox", [[0, 0, 0, 0]]), dtype=np.float64).reshape(-1)[:4]
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        score = float(inst.get("bbox_score", 1.0))
        value = area * score
        if previous_center is not None and x2 > x1:
            shift = np.linalg.norm(np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - previous_center) / (x2 - x1)
            value /= 1.0 + shift
        return value

    return max(instances, key=merit)


def read_mmpose_json(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    """MMPose ``--save-predictions`` output; frames without an instance are all-missing."""
    try:
        frames = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoseFormatError(f"{path}: not a JSON file ({exc})") from exc
    if isinstance(frames, dict) and "instance_info" in frames:  # MMPose's other dump layout
        frames = frames["instance_info"]
    if not isinstance(frames, list):
        raise PoseFormatError(f"{path}: expected a list of frames with 'instances', got {type(frames).__name__}")
    frames = sorted(frames, key=lambda f: f.get("frame_id", 0))
    out = np.zeros((len(frames), NUM_WHOLEBODY_POINTS, 3), dtype=np.float32)
    center = None
    for t, frame in enumerate(frames):
        instances = frame.get("instances") or []
        if not instances:
            continue
        inst = _main_instance(instances, center)
        xy = np.asarray(inst["keypoints"], dtype=np.float32)
        scores = np.asarray(inst["keypoint_scores"], dtype=np.float32)
        if xy.shape != (NUM_WHOLEBODY_POINTS, 2) or scores.shape != (NUM_WHOLEBODY_POINTS,):
            raise PoseFormatError(
                f"{path}: frame {frame.get('frame_id', t)} has keypoints {xy.shape} / scores {scores.shape}, "
                f"expected ({NUM_WHOLEBODY_POINTS}, 2) / ({NUM_WHOLEBODY_POINTS},)"
            )
        out[t] = clean_keypoints(xy, scores)
        box = np.asarray(inst.get("bbox", [[0, 0, 0, 0]]), dtype=np.float64).reshape(-1)[:4]
        center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return _sized_sequence(out, path, "MMPose predictions JSON", fps, width, height)


def read_npy(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise PoseFormatError(f"{path}: not a plain numpy array ({exc})") from exc
    return _sized_sequence(_from_array(array, path), path, ".npy", fps, width, height)


def read_npz(path: Path, fps=None, width=None, height=None) -> PoseSequence:
    with np.load(path, allow_pickle=False) as data:
        keys = [k for k in ("keypoints", "pose", "arr_0") if k in data]
        if not keys:
            raise PoseFormatError(f"{path}: no 'keypoints' array among {sorted(data.keys())}")
        array = data[keys[0]]
        stored = {k: float(data[k]) for k in ("fps", "width", "height") if k in data}
    fps = fps if fps is not None else stored.get("fps")
    width = width if width is not None else stored.get("width")
    height = height if height is not None else stored.get("height")
    return _sized_sequence(_from_array(array, path), path, ".npz (without fps / width / height arrays)", fps, width,
                           height)


def read_pickle_collection(path: str | Path, *, allow_pickle: bool) -> dict[str, np.ndarray]:
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
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise PoseFormatError(f"{path}: not a readable pickle ({exc})") from exc
    if not isinstance(data, dict):
        raise PoseFormatError(f"{path}: expected a dict name → (T, 133, 3) array, got {type(data).__name__}")
    return data


_READERS: dict[str, Callable[..., PoseSequence]] = {
    "pose": read_pose_file,
    "mmpose_json": read_mmpose_json,
    "npy": read_npy,
    "npz": read_npz,
}
_SUFFIX_FORMATS = {".pose": "pose", ".json": "mmpose_json", ".npy": "npy", ".npz": "npz"}
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
    """Read one pose sequence; ``key`` selects a sequence inside a pickle collection (``allow_pickle`` needed)."""
    path = Path(path)
    fmt = format_for_path(path) if format == "auto" else format
    if not path.is_file():
        raise PoseFormatError(f"{path}: no such pose file")
    if fmt == "pickle":
        if key is None:
            raise PoseFormatError(f"{path}: a pickle collection needs the key of the sequence to read")
        collection = read_pickle_collection(path, allow_pickle=allow_pickle)
        if key not in collection:
            raise PoseFormatError(f"{path}: no sequence named {key!r}")
        return _sized_sequence(_from_array(np.asarray(collection[key]), path), path, "pickle", fps, width, height,
                               f"{path}:{key}")
    if fmt not in _READERS:
        raise PoseFormatError(f"{path}: unknown pose format {fmt!r}; known: {sorted(POSE_FORMATS)}")
    seq = _READERS[fmt](path, fps, width, height)
    if seq.width <= 0 or seq.height <= 0:
        raise PoseFormatError(f"{path}: frame size {seq.width}x{seq.height} is not positive")
    return seq


def to_shard_pose(seq: PoseSequence) -> np.ndarray:
    """The 79 kept points as float16 ``(T, 79, 3)``: x / width, y / height, confidence (missing → 0, 0, 0)."""
    kept = wholebody_to_79(seq.keypoints).astype(np.float32)
    scale = np.array([seq.width, seq.height, 1.0], dtype=np.float32)
    out = kept / scale
    out[kept[..., 2] <= 0] = 0.0
    return out.astype(np.float16)
