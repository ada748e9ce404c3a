"""Hands-only clips for tests: what MediaPipe Hands gives (WLASL's hand landmarks) or an ASL Signs clip whose pose and
face are NaN — the 21 + 21 hand points detected, every body and face point missing (confidence 0, coordinates 0).

Made from the synthetic signer by making every non-hand point missing, in the shard's 79-point layout
(:func:`hands_only_pose`, :func:`hands_only_sample`) or in the 133-point COCO-WholeBody pixels a pose file holds
(:func:`hands_only_keypoints`). Variants (:data:`VARIANTS`):

- ``both_hands``: both hands as the signer's detection left them (a few frames lose a hand, as in real data);
- ``one_hand``: one hand missing in every frame too (a hand always out of view): the right one, or the left one when
  the right one is the only hand ever detected (a one-handed sign), so that a hand is left;
- ``handless_frames``: both hands missing in some frames (:data:`HANDLESS_EVERY`): frames with no point at all.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from slp.data.schema import Sample
from slp.pose.layout import HAND_INDICES, LEFT_HAND, NUM_POINTS, RIGHT_HAND, WHOLEBODY_INDICES

VARIANTS = ("both_hands", "one_hand", "handless_frames")
#: ``handless_frames``: every this-many-th frame (from the first) has no hand.
HANDLESS_EVERY = 3

_NON_HAND_79 = np.setdiff1d(np.arange(NUM_POINTS), HAND_INDICES)
_LEFT_HAND_79, _RIGHT_HAND_79 = (np.arange(part.start, part.stop) for part in (LEFT_HAND, RIGHT_HAND))


def _missing(points: np.ndarray, variant: str, non_hand: np.ndarray, left: np.ndarray, right: np.ndarray
             ) -> np.ndarray:
    """``points`` ``(T, N, 3)`` with ``non_hand`` points (and what ``variant`` drops) at (0, 0, 0); ``left`` and
    ``right`` index the hands."""
    if variant not in VARIANTS:
        raise ValueError(f"hands-only variant {variant!r}: one of {VARIANTS}")
    out = np.array(points, copy=True)
    out[:, non_hand] = 0
    if variant == "one_hand":
        left_seen = (out[:, left, 2] > 0).any()
        out[:, right if left_seen else left] = 0
    elif variant == "handless_frames":
        out[::HANDLESS_EVERY, np.concatenate([left, right])] = 0
    return out


def hands_only_pose(pose: np.ndarray, variant: str = "both_hands") -> np.ndarray:
    """A shard pose ``(T, 79, 3)`` with every body and face point missing (and what ``variant`` drops)."""
    return _missing(pose, variant, _NON_HAND_79, _LEFT_HAND_79, _RIGHT_HAND_79)


def hands_only_keypoints(keypoints: np.ndarray, variant: str = "both_hands") -> np.ndarray:
    """COCO-WholeBody ``(T, 133, 3)`` keypoints with every body, foot and face point missing (and what ``variant``
    drops)."""
    non_hand = np.setdiff1d(np.arange(keypoints.shape[1]), WHOLEBODY_INDICES[HAND_INDICES])
    return _missing(keypoints, variant, non_hand, WHOLEBODY_INDICES[_LEFT_HAND_79],
                    WHOLEBODY_INDICES[_RIGHT_HAND_79])


def hands_only_sample(sample: Sample, variant: str = "both_hands") -> Sample:
    """``sample`` with a hands-only pose (its key suffixed with the variant)."""
    return dataclasses.replace(sample, key=f"{sample.key}_{variant}", pose=hands_only_pose(sample.pose, variant))
