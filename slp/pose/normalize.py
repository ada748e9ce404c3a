"""Loader-side normalisation of shard poses (SPEC §1), batched.

Shards keep x / width and y / height so the normalisation can change without re-curation. Here, per batch:
hands are expressed relative to their own per-frame bounding box (a crop, which makes handshape independent of
where the hand is), everything else relative to the frame; both end in [-1, 1]. Confidence passes through and
missing points (confidence 0) stay at 0.
"""

from __future__ import annotations

import torch

from slp.pose.layout import LEFT_HAND, NUM_POINTS, RIGHT_HAND

# The two hands are adjacent and last in the 79 array: one (2, 21, ...) view normalises both at once, and every
# point before them is normalised by the frame.
HANDS = slice(LEFT_HAND.start, RIGHT_HAND.stop)
assert LEFT_HAND.stop == RIGHT_HAND.start and RIGHT_HAND.stop == NUM_POINTS
assert LEFT_HAND.stop - LEFT_HAND.start == RIGHT_HAND.stop - RIGHT_HAND.start

_AWAY = 1e30  # added to missing points so a min / max over a hand ignores them


def normalize_pose(pose: torch.Tensor) -> torch.Tensor:
    """Shard coordinates ``(..., 79, 3)`` → model input of the same shape (float32)."""
    shape = pose.shape
    # Point-major planes (79 points, 3 channels, N frames): every op below runs along contiguous rows of N frames
    # and a hand's box is an elementwise min / max over its 21 rows. On the frame-major layout the same ops work on
    # a last dimension of 3 or reduce over 21 strided points, and take four times as long on CPU, the two
    # transposes included.
    planes = pose.reshape(-1, NUM_POINTS * 3).t().clone(memory_format=torch.contiguous_format).float()
    x, y, conf = planes.view(NUM_POINTS, 3, -1).unbind(1)
    seen = conf.sign().clamp_(min=0)  # 1 seen, 0 missing: float, as boolean kernels are slower on CPU
    hand_x, hand_y, hand_seen = (p[HANDS].unflatten(0, (2, -1)) for p in (x, y, seen))  # (2, 21, N)
    away = (1 - hand_seen).mul_(_AWAY)
    lo_x, hi_x = (hand_x + away).amin(1), (hand_x - away).amax(1)
    lo_y, hi_y = (hand_y + away).amin(1), (hand_y - away).amax(1)
    hand_visible = hand_seen.amax(1) > 0
    # The larger side keeps the aspect ratio; a hand seen at one point only (side 0) or not at all gets a unit box.
    side = torch.maximum(hi_x - lo_x, hi_y - lo_y)
    half = torch.where(hand_visible & (side > 0), side / 2, 1.0)
    centre_x = torch.where(hand_visible, (lo_x + hi_x) / 2, 0.0)
    centre_y = torch.where(hand_visible, (lo_y + hi_y) / 2, 0.0)
    x[: HANDS.start].mul_(2).sub_(1)
    y[: HANDS.start].mul_(2).sub_(1)
    hand_x.sub_(centre_x[:, None]).div_(half[:, None])
    hand_y.sub_(centre_y[:, None]).div_(half[:, None])
    x.mul_(seen)
    y.mul_(seen)
    return planes.t().contiguous().view(shape)
