"""Other estimators' keypoint layouts → COCO-WholeBody 133, shared by the readers and the extractors.

Layouts (the names are what :class:`Provenance` and the sample metadata record):

- ``coco_wholebody_133``: BODY 23 (17 body + 6 feet) + FACE 68 + LEFT_HAND 21 + RIGHT_HAND 21 (MMPose, RTMW,
  DWPose, OpenPifPaf): kept as it is;
- ``mediapipe_holistic_543`` / ``_553`` / ``_576`` / ``_586``: MediaPipe Holistic's 33 pose points, 468 face
  mesh points (478 with the refined irises), 21 + 21 hand points, optionally followed by the 33 metric
  ``POSE_WORLD_LANDMARKS`` (ignored: they are metres around the hips, not image points);
- ``openpose_137``: OpenPose BODY_25 + 70 face points (the 68 of dlib / 300-W, then the two pupils) + 21 + 21 hand
  points, from pose-format ``.pose`` files or OpenPose's per-frame JSON (How2Sign's release).

Mapping rules:

- Body and feet come from the source's body points (:data:`MEDIAPIPE_BODY_TO_COCO`, :data:`OPENPOSE_BODY_TO_COCO`);
  a COCO point the source lacks (MediaPipe has no small toes) gets confidence 0.
- Face: COCO-WholeBody's 68 face points are the 300-W / dlib 68 (jaw 0-16 from the person's right ear to the left,
  brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67). OpenPose's first 68 face points are
  exactly those; for MediaPipe they are the mesh vertices of :data:`MEDIAPIPE_FACE_TO_68`.
- Hands map point for point (all three use OpenPose's 21-point hand order: wrist, then each finger from its base
  to its tip, thumb first). Left and right are the person's own, as in COCO-WholeBody: MediaPipe Holistic's
  ``LEFT_HAND_LANDMARKS`` and OpenPose's ``hand_left_keypoints_2d`` are the person's left hand (the one at the
  pose's ``LEFT_WRIST`` / ``LWrist``), so no side swaps.
- Coordinates: MediaPipe's own output is normalised to the frame; ``normalized=True`` multiplies it back into
  pixels (pose-format's MediaPipe ``.pose`` files already hold pixels).
- A point is missing (0, 0, confidence 0) when its confidence is not positive or a value is not finite;
  confidences are clipped to [0, 1] (:func:`clean_keypoints`, the rule of every reader).
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slp.pose.layout import NUM_WHOLEBODY_POINTS

COCO_WHOLEBODY = "coco_wholebody_133"
OPENPOSE = "openpose_137"
MEDIAPIPE_PREFIX = "mediapipe_holistic_"

_FACE, _LEFT_HAND, _RIGHT_HAND = 23, 91, 112  # first COCO-WholeBody index of each part

#: COCO body + feet index → MediaPipe pose landmark (the person's left is MediaPipe's LEFT_*); -1 = not in the source.
MEDIAPIPE_BODY_TO_COCO: tuple[int, ...] = (
    0,  # nose
    2, 5,  # left eye, right eye (the eye centres; MediaPipe's 1/3 and 4/6 are the inner / outer corners)
    7, 8,  # left ear, right ear
    11, 12, 13, 14, 15, 16,  # shoulders, elbows, wrists
    23, 24, 25, 26, 27, 28,  # hips, knees, ankles
    31, -1, 29,  # left big toe (LEFT_FOOT_INDEX: the toe tip), left small toe (none), left heel
    32, -1, 30,  # right big toe, right small toe, right heel
)

#: COCO body + feet index → OpenPose BODY_25 point (BODY_25 lists the right side first).
OPENPOSE_BODY_TO_COCO: tuple[int, ...] = (
    0,  # nose
    16, 15, 18, 17,  # left eye, right eye, left ear, right ear
    5, 2, 6, 3, 7, 4,  # left / right shoulder, elbow, wrist
    12, 9, 13, 10, 14, 11,  # left / right hip, knee, ankle
    19, 20, 21,  # left big toe, small toe, heel
    22, 23, 24,  # right big toe, small toe, heel
)

#: The 68 face points (300-W / dlib order, as COCO-WholeBody) → MediaPipe face mesh vertex. "Right" is the
#: person's right (the image's left in a frontal view); every mirrored pair of 300-W points maps to a mirrored pair
#: of vertices. The jaw takes vertices of the mesh's face oval, from the right ear (127) through the chin (152) to
#: the left ear (356); the oval is denser near the chin than 300-W's evenly spaced jaw, so the vertices kept are
#: those nearest to HRNet's 300-W jaw on real video (../shared/realdata FOOTBALL: median error under 7 % of the
#: face size).
#: Brows: the outer tip, then the lower brow edge. Eyes and lips: the mesh's eye and lip contours at the 300-W
#: corners, centres and thirds (the inner lips' thirds are 81 / 311 above and 178 / 402 below, midway along the
#: mesh's inner contour between each corner and the centre).
MEDIAPIPE_FACE_TO_68: tuple[int, ...] = (
    127, 234, 93, 132, 172, 136, 149, 176, 152, 400, 378, 365, 397, 361, 323, 454, 356,  # jaw 0-16 (8 = chin)
    70, 53, 52, 65, 55,  # right brow 17-21, outer to inner
    285, 295, 282, 283, 300,  # left brow 22-26, inner to outer
    168, 197, 5, 4,  # nose bridge 27-30 (30 = nose tip)
    98, 97, 2, 326, 327,  # nostrils 31-35, right to left
    33, 160, 158, 133, 153, 144,  # right eye 36-41: outer corner, upper lid, inner corner, lower lid
    362, 385, 387, 263, 373, 380,  # left eye 42-47: inner corner, upper lid, outer corner, lower lid
    61, 39, 37, 0, 267, 269, 291,  # outer lips 48-54: right corner, upper lip, left corner
    321, 405, 17, 181, 91,  # outer lips 55-59: lower lip, left to right
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips 60-67: right corner, upper, left corner, lower
)

_MEDIAPIPE_SOURCES: dict[str, tuple[tuple[str, int], ...]] = {}
for _face_points in (468, 478):
    _holistic = (("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", _face_points), ("LEFT_HAND_LANDMARKS", 21),
                 ("RIGHT_HAND_LANDMARKS", 21))
    for _parts in (_holistic, (*_holistic, ("POSE_WORLD_LANDMARKS", 33))):
        _MEDIAPIPE_SOURCES[f"{MEDIAPIPE_PREFIX}{sum(n for _, n in _parts)}"] = _parts

#: Each supported layout's components (name, number of points), in the order its files store them.
LAYOUT_COMPONENTS: dict[str, tuple[tuple[str, int], ...]] = {
    COCO_WHOLEBODY: (("BODY", 23), ("FACE", 68), ("LEFT_HAND", 21), ("RIGHT_HAND", 21)),
    **_MEDIAPIPE_SOURCES,
    OPENPOSE: (("pose_keypoints_2d", 25), ("face_keypoints_2d", 70), ("hand_left_keypoints_2d", 21),
               ("hand_right_keypoints_2d", 21)),
}
LAYOUTS: tuple[str, ...] = tuple(LAYOUT_COMPONENTS)

#: The estimator a layout implies when a file does not name one (a COCO-WholeBody file may come from several).
LAYOUT_ESTIMATORS: dict[str, str] = {**{name: "mediapipe holistic" for name in _MEDIAPIPE_SOURCES},
                                     OPENPOSE: "openpose", COCO_WHOLEBODY: ""}


@dataclass(frozen=True)
class Provenance:
    """Where a sequence's points come from: the source ``layout`` (one of :data:`LAYOUTS`), the ``estimator``
    (name and version, ``""`` when unknown) and the ``video`` they were extracted from (its absolute path, as slp's
    extraction recorded it; ``""`` when unknown), which renders draw the points on."""

    layout: str
    estimator: str = ""
    video: str = ""

    def to_json(self) -> dict[str, str]:
        return {"layout": self.layout, "estimator": self.estimator, **({"video": self.video} if self.video else {})}


def detect_layout(components: Sequence[tuple[str, int]]) -> str | None:
    """The layout of a pose-format header from its ``(component name, number of points)`` list, None when it is
    none of :data:`LAYOUTS` (``[(c.name, len(c.points)) for c in pose.header.components]``)."""
    found = tuple((str(name), int(n)) for name, n in components)
    return next((layout for layout, expected in LAYOUT_COMPONENTS.items() if expected == found), None)


@functools.cache
def layout_points(layout: str) -> int:
    """Number of points of a layout."""
    return sum(n for _, n in _components(layout))


def _components(layout: str) -> tuple[tuple[str, int], ...]:
    if layout not in LAYOUT_COMPONENTS:
        raise ValueError(f"unknown keypoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUT_COMPONENTS[layout]


def clean_keypoints(xy: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Stack ``(T, N, 2)`` coordinates and ``(T, N)`` confidences into ``(T, N, 3)`` float32 with the missing rule.

    A point is missing when its confidence is not positive or any value is non-finite; missing points become
    ``(0, 0, 0)``. Confidences above 1 (MMPose's heatmap scores reach 1.06) are clipped to 1 so they can serve as
    loss weights.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: missing below
        xy = np.asarray(xy, dtype=np.float32)
        conf = np.asarray(confidence, dtype=np.float32)
    valid = (conf > 0) & np.isfinite(conf) & np.isfinite(xy).all(axis=-1)
    out = np.zeros(xy.shape[:-1] + (3,), dtype=np.float32)
    out[..., :2] = np.where(valid[..., None], xy, 0.0)
    out[..., 2] = np.where(valid, np.clip(conf, 0.0, 1.0), 0.0)
    return out


@functools.cache
def _source_index(layout: str) -> np.ndarray:
    """For each of the 133 COCO-WholeBody points, its index in the source layout (-1: the source lacks it);
    cached, hence read-only."""
    index = np.full(NUM_WHOLEBODY_POINTS, -1, dtype=np.int64)
    if layout == COCO_WHOLEBODY:
        index[:] = np.arange(NUM_WHOLEBODY_POINTS)
        index.flags.writeable = False
        return index
    if layout == OPENPOSE:
        body, face, left, right = np.array(OPENPOSE_BODY_TO_COCO), np.arange(25, 25 + 68), 95, 116
    else:
        face_points = _components(layout)[1][1]
        body, face = np.array(MEDIAPIPE_BODY_TO_COCO), 33 + np.array(MEDIAPIPE_FACE_TO_68)
        left = 33 + face_points
        right = left + 21
    index[:_FACE] = body
    index[_FACE:_LEFT_HAND] = face
    index[_LEFT_HAND:_RIGHT_HAND] = np.arange(left, left + 21)
    index[_RIGHT_HAND:] = np.arange(right, right + 21)
    index.flags.writeable = False
    return index


def to_coco_wholebody(points: np.ndarray, confidence: np.ndarray | None, layout: str, *, width: float | None = None,
                      height: float | None = None, normalized: bool = False) -> np.ndarray:
    """``(T, P, C >= 2)`` points of ``layout`` (x, y first; more dimensions are ignored) and ``(T, P)`` confidences →
    ``(T, 133, 3)`` float32 COCO-WholeBody pixels (x, y, confidence).

    ``confidence=None`` counts every finite point as detected. ``normalized=True`` (MediaPipe's own output) scales
    x by ``width`` and y by ``height``.
    """
    points = np.asarray(points, dtype=np.float64)
    expected = layout_points(layout)
    if points.ndim != 3 or points.shape[1] != expected or points.shape[2] < 2:
        raise ValueError(f"{layout}: points of shape {points.shape}, expected (T, {expected}, 2+)")
    xy = points[..., :2]
    if confidence is None:
        conf = np.isfinite(xy).all(axis=-1).astype(np.float64)
    else:
        conf = np.asarray(confidence, dtype=np.float64)
        if conf.shape != points.shape[:2]:
            raise ValueError(f"{layout}: confidence of shape {conf.shape}, expected {points.shape[:2]}")
    if normalized:
        if not (width and height):
            raise ValueError("normalized coordinates need the frame width and height")
        xy = xy * np.array([width, height], dtype=np.float64)
    index = _source_index(layout)
    present = index >= 0
    out_xy = np.zeros((points.shape[0], NUM_WHOLEBODY_POINTS, 2))
    out_conf = np.zeros((points.shape[0], NUM_WHOLEBODY_POINTS))
    out_xy[:, present] = xy[:, index[present]]
    out_conf[:, present] = conf[:, index[present]]
    return clean_keypoints(out_xy, out_conf)


def pose_to_coco_wholebody(pose) -> tuple[np.ndarray, str]:
    """A pose-format ``Pose`` of any of :data:`LAYOUTS` → (``(T, 133, 3)`` keypoints of person 0, its layout).

    Masked values are missing points; a file without people gives frames without detections. Raises
    ``ValueError`` naming the components for a layout outside :data:`LAYOUTS`.
    """
    components = [(c.name, len(c.points)) for c in pose.header.components]
    layout = detect_layout(components)
    if layout is None:
        described = ", ".join(f"{name}({n})" for name, n in components)
        raise ValueError(f"layout {described} ({sum(n for _, n in components)} points) is none of {', '.join(LAYOUTS)}")
    data = pose.body.data
    if data.ndim != 4 or data.shape[2] != layout_points(layout) or data.shape[3] < 2:
        raise ValueError(f"{layout}: body data of shape {data.shape} is not (frames, people, "
                         f"{layout_points(layout)}, 2+)")
    if data.shape[1] == 0:
        return np.zeros((data.shape[0], NUM_WHOLEBODY_POINTS, 3), dtype=np.float32), layout
    xy = np.ma.getdata(data)[:, 0, :, :2]
    masked = np.ma.getmaskarray(data)[:, 0, :, :2].any(axis=-1)
    conf = np.where(masked, 0.0, np.asarray(pose.body.confidence)[:, 0])
    return to_coco_wholebody(xy, conf, layout), layout


# Provenance of the .pose files slp writes. pose-format headers have no free-form field, so it follows the body as
# a trailer that pose-format's reader never reaches: JSON, its byte length (uint32 LE), then this magic.
_TRAILER_MAGIC = b"SLPPROV1"
_TRAILER_LENGTH = struct.Struct("<I")


def provenance_trailer(provenance: Provenance) -> bytes:
    """The bytes to append after a ``.pose`` body to record ``provenance``."""
    payload = json.dumps(provenance.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return payload + _TRAILER_LENGTH.pack(len(payload)) + _TRAILER_MAGIC


def pose_provenance(raw: bytes, layout: str) -> Provenance:
    """The provenance of a ``.pose`` file's bytes whose header has ``layout``: what its trailer records (files slp
    extracted), else the estimator the layout implies (:data:`LAYOUT_ESTIMATORS`)."""
    end = len(raw) - len(_TRAILER_MAGIC)
    if end >= _TRAILER_LENGTH.size and raw[end:] == _TRAILER_MAGIC:
        (size,) = _TRAILER_LENGTH.unpack_from(raw, end - _TRAILER_LENGTH.size)
        start = end - _TRAILER_LENGTH.size - size
        try:
            recorded = json.loads(raw[start:end - _TRAILER_LENGTH.size].decode("utf-8")) if start >= 0 else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            recorded = None
        if isinstance(recorded, dict) and isinstance(recorded.get("estimator"), str):
            video = recorded.get("video")
            return Provenance(str(recorded.get("layout") or layout), recorded["estimator"],
                              video if isinstance(video, str) else "")
    return Provenance(layout, LAYOUT_ESTIMATORS.get(layout, ""))


_OPENPOSE_FRAME = re.compile(r"_(\d+)_keypoints\.json$")
def read_openpose_folder(folder: str | Path, width: float | None = None, height: float | None = None) -> np.ndarray:
    """OpenPose's per-frame JSON of one video (``<name>_<frame number>_keypoints.json``, How2Sign's release) →
    ``(T, 133, 3)`` COCO-WholeBody pixels of the main signer (:func:`slp.extract.tracking.main_track`).

    Each frame sits at its number (from 0), so a missing file is a frame without detections. The files record no
    fps or frame size: the signer's centrality is judged in the ``width`` × ``height`` frame when given, else in
    the extent of all detected points. Raises ``ValueError`` (naming the file) for a folder without such files or
    a file that is not OpenPose's JSON.
    """
    from slp.extract.tracking import Detection, main_track

    folder = Path(folder)
    numbered = []
    for path in folder.iterdir():
        match = _OPENPOSE_FRAME.search(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    if not numbered:
        raise ValueError(f"{folder}: no OpenPose '*_<frame>_keypoints.json' files")
    numbered.sort()
    people: list[np.ndarray] = []  # every person of every file, (137, 3) OpenPose points
    owners: list[int] = []  # the frame of each
    for t, path in numbered:
        try:
            for person in json.loads(path.read_text(encoding="utf-8"))["people"]:
                parts = [np.asarray(person.get(name) or np.zeros(3 * n), dtype=np.float64).reshape(n, 3)
                         for name, n in LAYOUT_COMPONENTS[OPENPOSE]]
                people.append(np.concatenate(parts))
                owners.append(t)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not an OpenPose keypoints file ({type(exc).__name__}: {exc})") from exc
    frames: list[list[Detection]] = [[] for _ in range(numbered[-1][0] + 1)]
    if people:
        points = np.stack(people)
        for t, keypoints in zip(owners, to_coco_wholebody(points[..., :2], points[..., 2], OPENPOSE)):
            if keypoints[:, 2].any():
                frames[t].append(Detection.from_keypoints(keypoints))
    return main_track(frames, width, height)
