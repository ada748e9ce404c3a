"""Loader-side normalisation: batched tensor ops equal a per-point reference."""

from __future__ import annotations

import numpy as np
import torch

from slp.pose.layout import HAND_INDICES, LEFT_HAND, RIGHT_HAND
from slp.pose.normalize import normalize_pose


def _reference(pose: np.ndarray) -> np.ndarray:
    """Frame by frame, point by point."""
    out = np.zeros_like(pose, dtype=np.float64)
    for t in range(pose.shape[0]):
        for i in range(79):
            x, y, c = pose[t, i]
            out[t, i, 2] = c
            if c > 0 and i not in HAND_INDICES:
                out[t, i, :2] = (2 * x - 1, 2 * y - 1)
        for part in (LEFT_HAND, RIGHT_HAND):
            pts = [(i, pose[t, i]) for i in range(part.start, part.stop) if pose[t, i, 2] > 0]
            if not pts:
                continue
            xs = [p[1][0] for p in pts]
            ys = [p[1][1] for p in pts]
            cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
            side = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
            for i, p in pts:
                out[t, i, :2] = ((p[0] - cx) / (side / 2), (p[1] - cy) / (side / 2))
    return out


def test_matches_reference_with_missing_points_and_missing_hands():
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 1, (2, 7, 79, 3)).astype(np.float32)
    pose[rng.random((2, 7, 79)) < 0.2] = 0.0
    pose[0, 3, LEFT_HAND] = 0.0  # a hand not detected in one frame
    pose[1, 2, RIGHT_HAND.start + 1 :] = 0.0  # a hand with a single detected point
    out = normalize_pose(torch.from_numpy(pose)).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], _reference(pose[b]), atol=1e-5)
    assert np.isfinite(out).all()
    assert np.abs(out[..., :2]).max() <= 1.0 + 1e-6


def test_hand_shape_is_invariant_to_hand_position_and_scale():
    rng = np.random.default_rng(1)
    pose = rng.uniform(0.3, 0.4, (1, 79, 3)).astype(np.float32)
    moved = pose.copy()
    moved[:, LEFT_HAND, :2] = moved[:, LEFT_HAND, :2] * 1.5 + 0.2
    a, b = normalize_pose(torch.from_numpy(pose)), normalize_pose(torch.from_numpy(moved))
    torch.testing.assert_close(a[:, LEFT_HAND], b[:, LEFT_HAND], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 0], normalize_pose(torch.from_numpy(moved))[:, 0] + 1)


def test_float16_shard_input_gives_float32():
    pose = torch.rand(3, 79, 3, dtype=torch.float16)
    assert normalize_pose(pose).dtype == torch.float32


def test_input_is_left_unchanged():
    for pose in (torch.rand(1, 79, 3), torch.rand(79, 3), torch.rand(2, 5, 79, 3)):  # shapes whose transpose is a view
        before = pose.clone()
        normalize_pose(pose)
        assert torch.equal(pose, before)
