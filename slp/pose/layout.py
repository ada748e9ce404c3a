"""The 79-keypoint layout of the paper (SPEC §1), as indices into COCO-WholeBody 133.

COCO-WholeBody order (MMPose / RTMPose / HRNet, 0-based): body 0-16, feet 17-22, face 23-90 (68 points),
left hand 91-111, right hand 112-132. The paper keeps the upper body, the jaw contour and nose tip, the inner
lips and both hands. Points are stored in ascending source index, so each part is a contiguous slice of the
79 array.
"""

from __future__ import annotations

import numpy as np

NUM_WHOLEBODY_POINTS = 133
NUM_POINTS = 79

#: Names of the 133 COCO-WholeBody points (MMPose's naming in the ``.pose`` files it writes): the 23 body and feet
#: points, then ``face-0`` … ``face-67``, ``left_hand_0`` … ``left_hand_20``, ``right_hand_0`` … ``right_hand_20``.
COCO_WHOLEBODY_POINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    *(f"face-{i}" for i in range(68)),
    *(f"left_hand_{i}" for i in range(21)),
    *(f"right_hand_{i}" for i in range(21)),
)

# Source index ranges (0-based, inclusive start, exclusive end) into the 133 layout, part by part.
_PART_SOURCES: dict[str, list[int]] = {
    "body": list(range(0, 11)),  # nose, eyes, ears, shoulders, elbows, wrists
    "face": list(range(23, 40)) + [53],  # jaw contour (face points 0-16) and nose tip (face point 30)
    "mouth": list(range(83, 91)),  # inner lips (face points 60-67)
    "left_hand": list(range(91, 112)),
    "right_hand": list(range(112, 133)),
}

PART_NAMES: tuple[str, ...] = tuple(_PART_SOURCES)

#: Indices into the 133 layout of the 79 kept points, in the order of the 79 array.
WHOLEBODY_INDICES: np.ndarray = np.array(
    [i for part in PART_NAMES for i in _PART_SOURCES[part]], dtype=np.int64
)


def _part_slices() -> dict[str, slice]:
    slices, start = {}, 0
    for part in PART_NAMES:
        n = len(_PART_SOURCES[part])
        slices[part] = slice(start, start + n)
        start += n
    return slices


#: Slice of each part inside the 79 array.
PART_SLICES: dict[str, slice] = _part_slices()
BODY, FACE, MOUTH, LEFT_HAND, RIGHT_HAND = (PART_SLICES[p] for p in PART_NAMES)

MANUAL_PARTS: tuple[str, ...] = ("body", "left_hand", "right_hand")
NON_MANUAL_PARTS: tuple[str, ...] = ("face", "mouth")


def _indices(parts: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([np.arange(PART_SLICES[p].start, PART_SLICES[p].stop) for p in parts])


#: Positions in the 79 array of the manual (53) and non-manual (26) points.
MANUAL_INDICES: np.ndarray = _indices(MANUAL_PARTS)
NON_MANUAL_INDICES: np.ndarray = _indices(NON_MANUAL_PARTS)
HAND_INDICES: np.ndarray = _indices(("left_hand", "right_hand"))

#: Part id (index into PART_NAMES) of every one of the 79 points.
POINT_PART: np.ndarray = np.concatenate(
    [np.full(PART_SLICES[p].stop - PART_SLICES[p].start, k) for k, p in enumerate(PART_NAMES)]
)


def _source_to_position() -> dict[int, int]:
    return {int(src): pos for pos, src in enumerate(WHOLEBODY_INDICES)}


_POS = _source_to_position()

# COCO body skeleton restricted to the kept upper body (source indices).
_BODY_EDGES = [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10)]
# Jaw contour is a chain of face points 0..16; the nose tip hangs from the chin (face point 8 = source 31).
_FACE_EDGES = [(i, i + 1) for i in range(23, 39)] + [(53, 31)]
#: Inner lips: a closed loop of face points 60..67 (indices into the 68 face points).
INNER_LIPS_LOOP: tuple[tuple[int, int], ...] = tuple((60 + i, 60 + (i + 1) % 8) for i in range(8))
_MOUTH_EDGES = [(23 + a, 23 + b) for a, b in INNER_LIPS_LOOP]
#: Hand tree: root to each finger's base, then along each finger (21-point OpenPose / COCO hand order).
HAND_TREE: tuple[tuple[int, int], ...] = tuple([(0, f) for f in (1, 5, 9, 13, 17)] + [
    (f + k, f + k + 1) for f in (1, 5, 9, 13, 17) for k in range(3)
])
_LEFT_HAND_EDGES = [(91 + a, 91 + b) for a, b in HAND_TREE]
_RIGHT_HAND_EDGES = [(112 + a, 112 + b) for a, b in HAND_TREE]
# Links between parts: body wrists to hand roots; body nose to the face nose tip, and the nose tip to the
# middle of the upper inner lip (face point 62 = source 85) so the mouth joins the graph.
_LINK_EDGES = [(9, 91), (10, 112), (0, 53), (53, 85)]

#: Undirected skeleton edges of the 79-node graph, as pairs of positions in the 79 array.
EDGES: np.ndarray = np.array(
    [
        (_POS[a], _POS[b])
        for a, b in _BODY_EDGES + _FACE_EDGES + _MOUTH_EDGES + _LEFT_HAND_EDGES + _RIGHT_HAND_EDGES + _LINK_EDGES
    ],
    dtype=np.int64,
)

#: Colour (RGB) per part, for rendering.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "body": (230, 230, 230),
    "face": (250, 200, 60),
    "mouth": (240, 90, 90),
    "left_hand": (80, 200, 120),
    "right_hand": (80, 150, 250),
}


def adjacency(self_loops: bool = True) -> np.ndarray:
    """Symmetric 79 × 79 adjacency matrix of :data:`EDGES` (float32), optionally with self-loops."""
    a = np.zeros((NUM_POINTS, NUM_POINTS), dtype=np.float32)
    a[EDGES[:, 0], EDGES[:, 1]] = 1.0
    a[EDGES[:, 1], EDGES[:, 0]] = 1.0
    if self_loops:
        a += np.eye(NUM_POINTS, dtype=np.float32)
    return a


def wholebody_to_79(keypoints: np.ndarray) -> np.ndarray:
    """Select the 79 kept points from ``(..., 133, C)`` COCO-WholeBody keypoints."""
    if keypoints.shape[-2] != NUM_WHOLEBODY_POINTS:
        raise ValueError(
            f"expected {NUM_WHOLEBODY_POINTS} COCO-WholeBody points on axis -2, got shape {keypoints.shape}"
        )
    return keypoints[..., WHOLEBODY_INDICES, :]
