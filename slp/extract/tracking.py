"""The main signer of a clip: people are associated across frames into tracks, then one track is kept.

Sign-language videos frame their signer: large and central for the whole clip, while bystanders, interpreters'
partners or people in a studio's background are smaller, off-centre or only briefly there. Picking the largest
person frame by frame would jump between people whenever a bystander leans in; so detections are first linked
into tracks (greedy box-overlap matching between consecutive frames, a track surviving a few missed frames), and
the track with the largest sum over the clip of box area × centrality is the signer. Frames where that track has
no detection get no detection: the output never switches person mid-clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slp.pose.layout import NUM_WHOLEBODY_POINTS

#: A detection joins a track when its box overlaps the track's last box by at least this IoU.
MATCH_IOU = 0.3
#: A track takes detections again after up to this many frames without one (occlusion, a missed detection).
MAX_GAP = 15
#: Points above this confidence span a person's box when the estimator gives none (low-confidence points are
#: often guesses far outside the body); all detected points serve when fewer than two pass.
BOX_CONFIDENCE = 0.3


@dataclass
class Detection:
    """One person in one frame: ``keypoints`` ``(133, 3)`` pixels (x, y, confidence) and its ``box``
    ``(x1, y1, x2, y2)``."""

    keypoints: np.ndarray
    box: np.ndarray

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, box=None) -> Detection:
        """A detection whose box is the estimator's ``box`` or, without one, the extent of its points."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if box is None:
            detected = keypoints[:, 2] > 0
            confident = keypoints[:, 2] > BOX_CONFIDENCE
            points = keypoints[confident if confident.sum() >= 2 else detected, :2]
            box = np.concatenate([points.min(axis=0), points.max(axis=0)]) if len(points) else np.zeros(4)
        return cls(keypoints, np.asarray(box, dtype=np.float64).reshape(-1)[:4])


def instance_box(instance: dict) -> np.ndarray | None:
    """The ``(x1, y1, x2, y2)`` box of an MMPose-style instance (its ``bbox``, ``[[x1, y1, x2, y2]]`` or flat), None
    when it has none or an empty one. Raises ``ValueError`` / ``TypeError`` for a box that is not numbers."""
    box = np.asarray(instance.get("bbox", [[0, 0, 0, 0]]), dtype=np.float64).reshape(-1)[:4]
    if len(box) < 4 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def associate(frames: list[list[Detection]], *, match_iou: float = MATCH_IOU,
              max_gap: int = MAX_GAP) -> list[dict[int, Detection]]:
    """Tracks (frame index → detection) linking each frame's detections to the tracks alive at that frame.

    Greedy: the pair (live track, detection) of highest IoU is linked first, down to ``match_iou``; a detection
    left over starts a new track. Ties go to the earlier track and detection, so the result is deterministic.
    """
    tracks: list[dict[int, Detection]] = []
    last_seen: list[int] = []
    live: list[int] = []  # ids of the tracks that may still take detections, in creation order
    for t, detections in enumerate(frames):
        live = [k for k in live if t - last_seen[k] <= max_gap + 1]
        pairs = sorted(
            ((_iou(tracks[k][last_seen[k]].box, det.box), k, j) for k in live for j, det in enumerate(detections)),
            key=lambda pair: (-pair[0], pair[1], pair[2]),
        )
        used_tracks, used_detections = set(), set()
        for iou, k, j in pairs:
            if iou < match_iou:
                break
            if k in used_tracks or j in used_detections:
                continue
            tracks[k][t] = detections[j]
            last_seen[k] = t
            used_tracks.add(k)
            used_detections.add(j)
        for j, det in enumerate(detections):
            if j not in used_detections:
                live.append(len(tracks))
                tracks.append({t: det})
                last_seen.append(t)
    return tracks


def track_merit(track: dict[int, Detection], width: float, height: float) -> float:
    """Sum over the track's frames of its box area (a fraction of the frame) × centrality (1 at the frame's
    centre, 0 at its corners)."""
    center = np.array([width / 2, height / 2])
    half_diagonal = float(np.hypot(width, height)) / 2
    total = 0.0
    for det in track.values():
        x1, y1, x2, y2 = det.box
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0) / (width * height)
        shift = float(np.hypot((x1 + x2) / 2 - center[0], (y1 + y2) / 2 - center[1]))
        total += area * max(1.0 - shift / half_diagonal, 0.0)
    return total


def detections_extent(frames: list[list[Detection]]) -> tuple[float, float]:
    """The largest x and y of the detected points of all ``frames`` (at least 1 each): the frame size to judge
    centrality in when the video's is unknown."""
    detected = [d.keypoints[d.keypoints[:, 2] > 0, :2] for frame in frames for d in frame]
    detected = [points for points in detected if len(points)]
    extent = np.concatenate(detected).max(axis=0) if detected else np.ones(2)
    return float(max(extent[0], 1.0)), float(max(extent[1], 1.0))


def main_track(frames: list[list[Detection]], width: float | None = None, height: float | None = None) -> np.ndarray:
    """``(T, 133, 3)`` keypoints of the main signer over the clip (zeros where that track has no detection).

    Centrality is judged in the ``width`` × ``height`` frame; without them (a source that records no frame size),
    in the extent of all detected points (:func:`detections_extent`)."""
    out = np.zeros((len(frames), NUM_WHOLEBODY_POINTS, 3), dtype=np.float32)
    tracks = associate(frames)
    if not tracks:
        return out
    if not (width and height):
        width, height = detections_extent(frames)
    merits = [track_merit(track, width, height) for track in tracks]
    chosen = tracks[int(np.argmax(merits))]  # argmax keeps the first of equal merits: deterministic
    for t, det in chosen.items():
        out[t] = det.keypoints
    return out
