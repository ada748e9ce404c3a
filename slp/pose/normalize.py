"""Loader-side normalisation of shard poses (SPEC §1), batched.

Shards keep x / width and y / height so the normalisation can change without re-curation. Here, per batch:
hands are expressed relative to their own per-frame bounding box (a crop, which makes handshape independent of
where the hand is), everything else relative to the frame; both end in [-1, 1]. Confidence passes through and
missing points (confidence 0) stay at 0.

The hand crop is square in pixels: its box is taken after x is scaled by the clip's width / height, so a handshape
has one aspect whatever the video's aspect ratio (How2Sign's 16:9, Phoenix's 210 × 260). Each clip's frame size
comes from its metadata.
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


def normalize_pose(pose: torch.Tensor, frame_size: torch.Tensor) -> torch.Tensor:
    """Shard coordinates ``(..., T, 79, 3)`` → model input of the same shape (float32).

    ``frame_size`` is each clip's ``(width, height)`` in pixels, shaped ``(..., 2)`` over the same leading
    dimensions as ``pose`` (``(2,)`` for one clip ``(T, 79, 3)``).
    """
    shape = pose.shape
    if pose.dim() < 3 or frame_size.shape != (*shape[:-3], 2):
        raise ValueError(f"frame_size of shape {tuple(frame_size.shape)} for poses of shape {tuple(shape)}: "
                         f"expected {(*shape[:-3], 2)}")
    # Point-major planes (79 points, 3 channels, N frames): every op below runs along contiguous rows of N frames
    # and a hand's box is an elementwise min / max over its 21 rows. On the frame-major layout the same ops work on
    # a last dimension of 3 or reduce over 21 strided points, which costs more on CPU than the two transposes.
    planes = pose.reshape(-1, NUM_POINTS * 3).t().clone(memory_format=torch.contiguous_format).float()
    x, y, conf = planes.view(NUM_POINTS, 3, -1).unbind(1)
    size = frame_size.to(torch.float32)
    aspect = (size[..., 0] / size[..., 1].clamp(min=1e-6))[..., None].expand(*shape[:-2]).reshape(-1)  # per frame
    seen = conf.sign().clamp_(min=0)  # 1 seen, 0 missing: float, as boolean kernels are slower on CPU
    # Hand x in units of the frame's height, like y: the box below is then square in pixels.
    hand_x = x[HANDS].unflatten(0, (2, -1)).mul_(aspect)  # (2, 21, N), a view: x's hand rows are scaled in place
    hand_y, hand_seen = (p[HANDS].unflatten(0, (2, -1)) for p in (y, seen))
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
