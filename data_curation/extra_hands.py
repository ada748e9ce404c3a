"""A second hand-pose source merged with the main (MMPose) body and face — SPEC §2: the paper adds samples for
low-resource languages by taking InterWild hands with MMPose bodies.

The extra source is read with the same readers (a 133-point COCO-WholeBody sequence of the same video, of which
only the hands, points 91-132, are used). Rules:

- both sequences must have the same number of frames (they come from the same video); otherwise the record is
  rejected rather than guessed into alignment;
- coordinates are rescaled when the two sources recorded different frame sizes;
- a hand point the extra source did not detect (confidence 0) keeps the main source's point, so the merged
  sample is never worse than the main one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from slp.pose.readers import PoseSequence

HAND_POINTS = slice(91, 133)  # left hand 91-111, right hand 112-132 (0-based COCO-WholeBody)


def merge_extra_hands(main: PoseSequence, hands: PoseSequence) -> PoseSequence:
    """``main`` with its hand points replaced by ``hands``' wherever ``hands`` detected them."""
    if hands.num_frames != main.num_frames:
        raise ValueError(f"extra hands {hands.source or '?'} have {hands.num_frames} frames, the main pose "
                         f"{main.source or '?'} {main.num_frames}: they must come from the same video")
    extra = hands.keypoints[:, HAND_POINTS].copy()
    if (hands.width, hands.height) != (main.width, main.height) and hands.width > 0 and hands.height > 0:
        extra[..., 0] *= main.width / hands.width
        extra[..., 1] *= main.height / hands.height
    keypoints = main.keypoints.copy()
    detected = extra[..., 2] > 0
    keypoints[:, HAND_POINTS] = np.where(detected[..., None], extra, keypoints[:, HAND_POINTS])
    return dataclasses.replace(main, keypoints=keypoints, source=f"{main.source}+hands:{hands.source}")
