"""79-point sequences (a shard sample, a predicted sequence) as pose-format ``.pose`` files, and back.

The file holds the 79 kept points (:mod:`slp.pose.layout`) as five components — ``BODY``, ``FACE`` (jaw contour and
nose tip), ``MOUTH`` (inner lips), ``LEFT_HAND``, ``RIGHT_HAND`` — each point named after its COCO-WholeBody point
(:data:`POINT_NAMES`), with the layout's skeleton edges inside each part as limbs. The links between parts (wrist
to hand root, nose to nose tip, nose tip to upper lip) are edges of the model's graph but not limbs: a pose-format
limb joins two points of one component. Coordinates are in pixels (x · width, y · height), fps and frame size are
in the header, and missing points (confidence 0) are masked with their coordinates stored as 0.

:func:`read_pose_79` gives back the shard array exactly: a float16 value times an integer width below 2^13 is exact
in float32 (11 + 13 significant bits), and in any case the float32 pixel value lies within 2^-24 (relative) of the
exact product, far inside half a float16 step, so dividing by the width and rounding to float16 returns the value.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slp.pose.layout import (
    COCO_WHOLEBODY_POINT_NAMES,
    EDGES,
    NUM_POINTS,
    PART_COLORS,
    PART_NAMES,
    PART_SLICES,
    POINT_PART,
    WHOLEBODY_INDICES,
)

#: Name of each of the 79 points (its COCO-WholeBody point's name), in the order of the 79 array.
POINT_NAMES: tuple[str, ...] = tuple(COCO_WHOLEBODY_POINT_NAMES[int(i)] for i in WHOLEBODY_INDICES)
#: pose-format component name of each part of :data:`slp.pose.layout.PART_NAMES`.
COMPONENT_NAMES: dict[str, str] = {part: part.upper() for part in PART_NAMES}
POINT_FORMAT = "XYC"
HEADER_VERSION = 0.2  # the version pose-format's writer stamps on every file it writes


@dataclass(frozen=True)
class Component:
    """A pose-format header component: its ``name``, ``points`` (names), ``limbs`` (pairs of point positions
    inside the component) and the RGB ``color`` of every limb."""

    name: str
    points: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    color: tuple[int, int, int]


@dataclass
class Pose79:
    """A sequence read back from a ``.pose`` file: ``pose`` as in a shard (float16 ``T × 79 × 3``)."""

    pose: np.ndarray
    fps: float
    width: int
    height: int


def pose_bytes(xy: np.ndarray, confidence: np.ndarray, fps: float, width: int, height: int,
               components: list[Component]) -> bytes:
    """The pose-format ``.pose`` bytes of one person: ``(T, N, 2)`` pixel coordinates and ``(T, N)`` confidences,
    the ``N`` points being those of ``components`` in order. A point of confidence <= 0 is missing: masked, with
    coordinates and confidence stored as 0. Coordinates are rounded once to float32; the header records
    :data:`HEADER_VERSION`, ``width`` × ``height`` (unsigned 16-bit integers) and the components."""
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    for name, size in (("width", width), ("height", height)):
        if int(size) != size or not 0 < size < 2**16:  # the header stores them as unsigned 16-bit integers
            raise ValueError(f"{name} {size} is not an integer in [1, 65535]")
    confidence = np.asarray(confidence, dtype=np.float32)
    missing = confidence <= 0
    points = np.where(missing[..., None], 0.0, np.asarray(xy)).astype(np.float32)[:, None]
    confidence = np.where(missing, np.float32(0), confidence)[:, None]
    body = NumPyPoseBody(fps, np.ma.masked_array(points, mask=np.repeat(missing[:, None, :, None], 2, axis=-1)),
                         confidence)
    header_components = [PoseHeaderComponent(c.name, list(c.points), [tuple(limb) for limb in c.limbs],
                                             [c.color] * len(c.limbs), POINT_FORMAT) for c in components]
    header = PoseHeader(HEADER_VERSION, PoseHeaderDimensions(int(width), int(height), 0), header_components)
    buffer = io.BytesIO()
    Pose(header, body).write(buffer)
    return buffer.getvalue()


def _components() -> list[Component]:
    """The 79-point layout's components: one per part, with the layout's edges inside the part as limbs."""
    components = []
    for k, part in enumerate(PART_NAMES):
        part_slice = PART_SLICES[part]
        inside = EDGES[(POINT_PART[EDGES[:, 0]] == k) & (POINT_PART[EDGES[:, 1]] == k)] - part_slice.start
        limbs = tuple((int(a), int(b)) for a, b in inside)
        components.append(Component(COMPONENT_NAMES[part], POINT_NAMES[part_slice], limbs, PART_COLORS[part]))
    return components


def pose_79_bytes(pose: np.ndarray, fps: float, width: int, height: int) -> bytes:
    """The ``.pose`` bytes of a 79-point sequence in shard coordinates: ``(T, 79, 3)`` x / width, y / height,
    confidence (a shard sample's pose, or a model's prediction), or ``(T, 79, 2)`` coordinates only (every point
    seen, confidence 1)."""
    pose = np.asarray(pose)
    if pose.ndim != 3 or pose.shape[1] != NUM_POINTS or pose.shape[2] not in (2, 3):
        raise ValueError(f"pose of shape {pose.shape} is not (T, {NUM_POINTS}, 2|3)")
    if not np.isfinite(pose).all():
        raise ValueError("pose holds values that are not finite (missing points have confidence 0, not NaN)")
    confidence = pose[..., 2].astype(np.float32) if pose.shape[2] == 3 else np.ones(pose.shape[:2], np.float32)
    # float64 product, then one rounding to float32: the pixel value nearest the exact one (module docstring).
    pixels = pose[..., :2].astype(np.float64) * np.array([width, height], dtype=np.float64)
    return pose_bytes(pixels, confidence, fps, width, height, _components())


def write_pose_79(path: str | Path, pose: np.ndarray, fps: float, width: int, height: int) -> Path:
    """Write :func:`pose_79_bytes` to ``path`` atomically (its folder is created); returns the path."""
    from slp.data.shards import write_bytes_atomic

    return write_bytes_atomic(Path(path), pose_79_bytes(pose, fps, width, height))


def read_pose_79(path: str | Path) -> Pose79:
    """A ``.pose`` file written by :func:`write_pose_79` → the shard array (person 0), fps and frame size.

    Raises ``ValueError`` when the file's components are not the 79-point layout.
    """
    from pose_format import Pose

    pose = Pose.read(Path(path).read_bytes())
    found = [(c.name, tuple(c.points)) for c in pose.header.components]
    expected = [(COMPONENT_NAMES[p], POINT_NAMES[PART_SLICES[p]]) for p in PART_NAMES]
    if found != expected:
        raise ValueError(f"{path}: components {[name for name, _ in found]} are not the 79-point layout "
                         f"{[name for name, _ in expected]}")
    dims = pose.header.dimensions
    data = pose.body.data[:, 0]
    xy = np.ma.getdata(data).astype(np.float32)
    missing = np.ma.getmaskarray(data).any(axis=-1)
    scaled = xy / np.array([dims.width, dims.height], dtype=np.float32)
    out = np.concatenate([np.where(missing[..., None], 0.0, scaled), pose.body.confidence[:, 0, :, None]], axis=-1)
    return Pose79(out.astype(np.float16), float(pose.body.fps), int(dims.width), int(dims.height))
