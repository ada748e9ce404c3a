"""Loader-side normalisation: batched tensor ops equal a per-point reference; hand crops are square in pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slp.pose.layout import HAND_INDICES, LEFT_HAND, RIGHT_HAND
from slp.pose.normalize import normalize_pose


def _reference(pose: np.ndarray, width: float, height: float) -> np.ndarray:
    """Frame by frame, point by point; the hand box is taken in pixels."""
    out = np.zeros_like(pose, dtype=np.float64)
    for t in range(pose.shape[0]):
        for i in range(79):
            x, y, c = pose[t, i]
            out[t, i, 2] = c
            if c > 0 and i not in HAND_INDICES:
                out[t, i, :2] = (2 * x - 1, 2 * y - 1)
        for part in (LEFT_HAND, RIGHT_HAND):
            seen = [i for i in range(part.start, part.stop) if pose[t, i, 2] > 0]
            if not seen:
                continue
            xs = {i: pose[t, i, 0] * width for i in seen}
            ys = {i: pose[t, i, 1] * height for i in seen}
            cx = (min(xs.values()) + max(xs.values())) / 2
            cy = (min(ys.values()) + max(ys.values())) / 2
            side = max(max(xs.values()) - min(xs.values()), max(ys.values()) - min(ys.values())) or 1.0
            for i in seen:
                out[t, i, :2] = ((xs[i] - cx) / (side / 2), (ys[i] - cy) / (side / 2))
    return out


def test_matches_reference_with_missing_points_and_missing_hands():
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 1, (2, 7, 79, 3)).astype(np.float32)
    pose[rng.random((2, 7, 79)) < 0.2] = 0.0
    pose[0, 3, LEFT_HAND] = 0.0  # a hand not detected in one frame
    pose[1, 2, RIGHT_HAND.start + 1 :] = 0.0  # a hand with a single detected point
    sizes = np.array([[1280, 720], [210, 260]], dtype=np.float32)
    out = normalize_pose(torch.from_numpy(pose), torch.from_numpy(sizes)).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], _reference(pose[b], *sizes[b]), atol=1e-5)
    assert np.isfinite(out).all()
    assert np.abs(out[..., :2]).max() <= 1.0 + 1e-6


def test_the_same_pixel_hand_normalises_alike_in_every_frame_size():
    """A hand is cropped square in pixels: its shape does not depend on the video's aspect ratio."""
    rng = np.random.default_rng(3)
    hand_px = rng.uniform(0, 90, (2, 21, 2)) + np.array([60.0, 80.0])  # two hands, pixels, inside every frame
    outs = []
    for width, height in ((1280, 720), (210, 260), (640, 480)):
        pose = np.zeros((4, 79, 3), dtype=np.float32)
        pose[:, LEFT_HAND.start : RIGHT_HAND.stop, 0] = (hand_px[..., 0] / width).reshape(-1)
        pose[:, LEFT_HAND.start : RIGHT_HAND.stop, 1] = (hand_px[..., 1] / height).reshape(-1)
        pose[:, LEFT_HAND.start : RIGHT_HAND.stop, 2] = 0.9
        out = normalize_pose(torch.from_numpy(pose), torch.tensor([width, height]))
        outs.append(out[:, LEFT_HAND.start : RIGHT_HAND.stop])
    for other in outs[1:]:
        torch.testing.assert_close(other, outs[0], atol=1e-5, rtol=0)
    # In x / width and y / height units (the old crop) the same hand has a different aspect in each frame.
    assert outs[0][..., :2].abs().amax().item() == pytest.approx(1.0, abs=1e-5)


def test_hand_shape_is_invariant_to_hand_position_and_scale():
    rng = np.random.default_rng(1)
    pose = rng.uniform(0.3, 0.4, (1, 79, 3)).astype(np.float32)
    moved = pose.copy()
    moved[:, LEFT_HAND, :2] = moved[:, LEFT_HAND, :2] * 1.5 + 0.2
    size = torch.tensor([640, 480])
    a, b = normalize_pose(torch.from_numpy(pose), size), normalize_pose(torch.from_numpy(moved), size)
    torch.testing.assert_close(a[:, LEFT_HAND], b[:, LEFT_HAND], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 0], b[:, 0] + 1)


def test_float16_shard_input_gives_float32():
    pose = torch.rand(3, 79, 3, dtype=torch.float16)
    assert normalize_pose(pose, torch.tensor([640, 480])).dtype == torch.float32


def test_frame_size_must_match_the_clips():
    with pytest.raises(ValueError, match="frame_size"):
        normalize_pose(torch.rand(2, 5, 79, 3), torch.tensor([640, 480]))


def test_input_is_left_unchanged():
    # Shapes whose transpose is a view.
    for pose, size in ((torch.rand(1, 79, 3), torch.tensor([640.0, 480.0])),
                       (torch.rand(2, 5, 79, 3), torch.tensor([[640, 480], [210, 260]]))):
        before = pose.clone()
        normalize_pose(pose, size)
        assert torch.equal(pose, before)
