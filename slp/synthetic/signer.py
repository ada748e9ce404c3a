"""Procedural 2-D signers in the COCO-WholeBody 133 layout.

A *gloss* is a seeded recipe: for each hand a wrist trajectory (control points relative to the shoulders, in
shoulder widths), a handshape sequence (per-finger curl and spread keyframes, a palm orientation) and a
mouthing pattern (mouth-opening keyframes). A *signer* is a seeded body: proportions, position and scale in the
frame, speed, coordinate noise and detection dropouts. Rendering a gloss with a signer gives the keypoints of
every frame in pixels; the same seeds always give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slp.pose.layout import NUM_WHOLEBODY_POINTS

# 21-point hand: wrist, then 4 joints per finger (thumb, index, middle, ring, little).
_FINGER_BASE_ANGLES = np.deg2rad([-50.0, -18.0, 0.0, 16.0, 32.0])  # fan of the fingers around the hand axis
_FINGER_LENGTHS = np.array([[0.30, 0.22, 0.18, 0.15], [0.42, 0.24, 0.16, 0.13], [0.42, 0.27, 0.18, 0.14],
                            [0.40, 0.25, 0.16, 0.13], [0.38, 0.19, 0.13, 0.12]])


@dataclass
class GlossRecipe:
    """How one gloss is signed, independent of who signs it."""

    wrist_paths: np.ndarray  # (2 hands, K, 2) wrist control points, shoulder widths from the shoulder centre
    two_handed: bool
    handshapes: np.ndarray  # (2 hands, H, 6): per-finger curl in [0, 1] (5) and spread in [-1, 1]
    orientations: np.ndarray  # (2 hands, H) palm-axis angle keyframes (radians)
    mouthing: np.ndarray  # (M,) mouth opening keyframes in [0, 1]
    base_frames: int


@dataclass
class SignerStyle:
    """Who signs: body and camera placement, speed, noise and detector failures."""

    shoulder_width: float  # fraction of the frame width
    center_x: float  # fraction of the frame width
    shoulder_y: float  # fraction of the frame height
    head_scale: float
    arm_reach: float  # multiplies trajectory amplitudes
    speed: float  # > 1 signs faster (fewer frames)
    noise: float  # coordinate noise, in shoulder widths
    point_dropout: float  # probability that a single point is missed
    hand_dropout: float  # probability that a whole hand is missed in a frame
    style_offset: np.ndarray  # (2,) personal shift of the signing space, shoulder widths


def make_gloss(rng: np.random.Generator) -> GlossRecipe:
    k = int(rng.integers(3, 5))
    dominant = np.stack([rng.uniform(-0.2, 0.9, k), rng.uniform(-1.1, 0.5, k)], axis=-1)
    two_handed = bool(rng.random() < 0.45)
    if two_handed:  # mirrored or independent second hand
        weak = dominant * np.array([-1.0, 1.0]) if rng.random() < 0.5 else np.stack(
            [rng.uniform(-0.9, 0.2, k), rng.uniform(-1.2, 0.3, k)], axis=-1)
    else:  # resting low in front of the body
        weak = np.tile(np.array([[-0.35, 0.9]]), (k, 1))
    h = int(rng.integers(2, 4))
    shapes = np.concatenate([rng.uniform(0, 1, (2, h, 5)), rng.uniform(-1, 1, (2, h, 1))], axis=-1)
    shapes = np.round(shapes * 2) / 2  # discrete handshapes: open, half, closed fingers
    return GlossRecipe(
        wrist_paths=np.stack([dominant, weak]),
        two_handed=two_handed,
        handshapes=shapes,
        orientations=rng.uniform(-0.6, 0.6, (2, h)) + np.array([[0.0], [np.pi]]),
        mouthing=rng.uniform(0, 1, int(rng.integers(2, 4))),
        base_frames=int(rng.integers(18, 30)),
    )


def make_signer(rng: np.random.Generator, noise: float, point_dropout: float, hand_dropout: float) -> SignerStyle:
    return SignerStyle(
        shoulder_width=float(rng.uniform(0.17, 0.25)),
        center_x=float(rng.uniform(0.42, 0.58)),
        shoulder_y=float(rng.uniform(0.58, 0.68)),
        head_scale=float(rng.uniform(0.9, 1.1)),
        arm_reach=float(rng.uniform(0.85, 1.15)),
        speed=float(rng.uniform(0.8, 1.25)),
        noise=float(noise * rng.uniform(0.5, 1.5)),
        point_dropout=float(point_dropout * rng.uniform(0.5, 1.5)),
        hand_dropout=float(hand_dropout * rng.uniform(0.5, 1.5)),
        style_offset=rng.normal(0, 0.06, 2),
    )


def _smooth_interp(keys: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Interpolate keyframes ``(K, ...)`` at times ``t`` in [0, 1] with cosine easing between keys."""
    k = keys.shape[0]
    if k == 1:
        return np.repeat(keys, len(t), axis=0)
    pos = np.clip(t, 0, 1) * (k - 1)
    i0 = np.minimum(pos.astype(int), k - 2)
    frac = pos - i0
    w = (1 - np.cos(np.pi * frac)) / 2
    w = w.reshape((-1,) + (1,) * (keys.ndim - 1))
    return keys[i0] * (1 - w) + keys[i0 + 1] * w


def gloss_controls(gloss: GlossRecipe, t: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame controls of a gloss at normalised times ``t``: wrists, handshapes, orientations, mouth."""
    return {
        "wrists": np.stack([_smooth_interp(gloss.wrist_paths[h], t) for h in range(2)], axis=1),  # (T, 2, 2)
        "shapes": np.stack([_smooth_interp(gloss.handshapes[h], t) for h in range(2)], axis=1),  # (T, 2, 6)
        "angles": np.stack([_smooth_interp(gloss.orientations[h], t) for h in range(2)], axis=1),  # (T, 2)
        "mouth": _smooth_interp(gloss.mouthing, t),  # (T,)
    }


def rest_controls(num_frames: int) -> dict[str, np.ndarray]:
    """Hands resting low in front of the body, mouth closed (before, between and after signs)."""
    return {
        "wrists": np.tile(np.array([[0.35, 0.9], [-0.35, 0.9]]), (num_frames, 1, 1)),
        "shapes": np.tile(np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.0]), (num_frames, 2, 1)),
        "angles": np.tile(np.array([0.0, np.pi]), (num_frames, 1)),
        "mouth": np.zeros(num_frames),
    }


def blend_controls(a: dict[str, np.ndarray], b: dict[str, np.ndarray], num_frames: int) -> dict[str, np.ndarray]:
    """A transition of ``num_frames`` from the last frame of ``a`` to the first frame of ``b``."""
    t = np.linspace(0, 1, num_frames + 2)[1:-1]
    return {k: _smooth_interp(np.stack([a[k][-1], b[k][0]]), t) for k in a}


def _hand_points(wrist: np.ndarray, shape: np.ndarray, angle: np.ndarray, size: float, mirror: float) -> np.ndarray:
    """``(T, 21, 2)`` hand keypoints from wrist ``(T, 2)``, shape ``(T, 6)`` and palm angle ``(T,)``."""
    t = wrist.shape[0]
    out = np.zeros((t, 21, 2))
    out[:, 0] = wrist
    axis = angle - np.pi / 2  # palm axis points up at angle 0
    for f in range(5):
        curl = shape[:, f]
        direction = axis + mirror * (_FINGER_BASE_ANGLES[f] * (1 + 0.5 * shape[:, 5]))
        point = wrist.copy()
        for j in range(4):
            # Each joint bends further with the curl; the thumb bends across the palm.
            direction = direction + mirror * curl * (1.1 if f else 0.7) * (j > 0)
            step = size * _FINGER_LENGTHS[f, j]
            point = point + step * np.stack([np.cos(direction), np.sin(direction)], axis=-1)
            out[:, 1 + 4 * f + j] = point
    return out


def _face_points(center: np.ndarray, scale: float, mouth: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` iBUG-68 face: jaw, brows, nose, eyes, outer and inner lips (mouth opening varies)."""
    t = center.shape[0]
    pts = np.zeros((t, 68, 2))
    jaw = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    pts[:, 0:17] = np.stack([-np.cos(jaw) * 0.5, np.sin(jaw) * 0.62 - 0.05], axis=-1)
    pts[:, 17:22] = np.stack([np.linspace(-0.42, -0.08, 5), -0.32 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], -1)
    pts[:, 22:27] = pts[:, 17:22][:, ::-1] * np.array([-1, 1])
    pts[:, 27:31] = np.stack([np.zeros(4), np.linspace(-0.22, 0.08, 4)], axis=-1)
    pts[:, 31:36] = np.stack([np.linspace(-0.1, 0.1, 5), np.full(5, 0.13)], axis=-1)
    eye = np.linspace(0, 2 * np.pi, 7)[:-1]
    for start, cx in ((36, -0.2), (42, 0.2)):
        pts[:, start:start + 6] = np.stack([cx + 0.09 * np.cos(eye), -0.2 + 0.035 * np.sin(eye)], axis=-1)
    lip = np.linspace(0, 2 * np.pi, 13)[:-1]
    opening = mouth[:, None]
    pts[:, 48:60] = np.stack([np.broadcast_to(0.22 * np.cos(lip), (t, 12)),
                              0.33 + (0.05 + 0.08 * opening) * np.sin(lip)], axis=-1)
    inner = np.linspace(0, 2 * np.pi, 9)[:-1]
    pts[:, 60:68] = np.stack([np.broadcast_to(0.14 * np.cos(inner), (t, 8)),
                              0.33 + (0.01 + 0.08 * opening) * np.sin(inner)], axis=-1)
    return center[:, None, :] + scale * pts


def render_signer(
    controls: dict[str, np.ndarray], signer: SignerStyle, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """Keypoints ``(T, 133, 3)`` float32 in pixels (x, y, confidence) for per-frame controls and a signer."""
    t = controls["mouth"].shape[0]
    sw = signer.shoulder_width * width  # pixels per shoulder width
    centre = np.array([signer.center_x * width, signer.shoulder_y * height])
    kp = np.zeros((t, NUM_WHOLEBODY_POINTS, 2))
    sway = 0.02 * sw * np.sin(np.linspace(0, 2 * np.pi, t) + rng.uniform(0, 2 * np.pi))[:, None]
    shoulders = centre + np.array([[0.5 * sw, 0.0], [-0.5 * sw, 0.0]])  # left (5), right (6) from the viewer
    head = centre + np.array([0.0, -0.75 * sw * signer.head_scale])
    kp[:, 0] = head + np.array([0, 0.05 * sw]) + sway
    for i, dx, dy in ((1, 0.1, -0.05), (2, -0.1, -0.05), (3, 0.2, 0.0), (4, -0.2, 0.0)):
        kp[:, i] = head + sw * np.array([dx, dy]) * signer.head_scale + sway
    kp[:, 5], kp[:, 6] = shoulders[0] + sway, shoulders[1] + sway
    wrists = centre + (controls["wrists"] * signer.arm_reach + signer.style_offset) * sw  # (T, 2, 2)
    wrists[:, 0, 0] = centre[0] - (wrists[:, 0, 0] - centre[0])  # dominant = right hand, on the viewer's left
    wrists[:, 1, 0] = centre[0] - (wrists[:, 1, 0] - centre[0])
    for hand, (sh, el, wr) in enumerate(((6, 8, 10), (5, 7, 9))):
        shoulder = kp[:, sh]
        mid = (shoulder + wrists[:, hand]) / 2
        outward = np.sign(shoulder[:, :1] - centre[0]) * 0.25 * sw
        kp[:, el] = mid + np.concatenate([outward, np.full_like(outward, 0.3 * sw)], axis=-1)
        kp[:, wr] = wrists[:, hand]
    kp[:, 11], kp[:, 12] = centre + np.array([0.35 * sw, 1.5 * sw]), centre + np.array([-0.35 * sw, 1.5 * sw])
    for i, base in ((13, 11), (14, 12), (15, 11), (16, 12)):  # knees, ankles: below the frame
        kp[:, i] = kp[:, base] + np.array([0.0, (1.2 if i < 15 else 2.4) * sw])
    kp[:, 17:23] = kp[:, [15, 15, 15, 16, 16, 16]] + np.array([0.0, 0.1 * sw])
    kp[:, 23:91] = _face_points(head + sway + np.array([0, 0.05 * sw]), 0.45 * sw * signer.head_scale,
                                controls["mouth"])
    hand_size = 0.42 * sw
    kp[:, 112:133] = _hand_points(wrists[:, 0], controls["shapes"][:, 0], controls["angles"][:, 0], hand_size, -1.0)
    kp[:, 91:112] = _hand_points(wrists[:, 1], controls["shapes"][:, 1], controls["angles"][:, 1], hand_size, 1.0)
    kp += rng.normal(0, signer.noise * sw, kp.shape)

    conf = np.clip(rng.normal(0.85, 0.08, (t, NUM_WHOLEBODY_POINTS)), 0.3, 1.0)
    conf[:, 11:23] *= 0.4  # lower body out of frame: weak detections
    missing = rng.random((t, NUM_WHOLEBODY_POINTS)) < signer.point_dropout
    for lo, hi in ((91, 112), (112, 133)):
        missing[:, lo:hi] |= (rng.random(t) < signer.hand_dropout)[:, None]
    outside = (kp[..., 0] < 0) | (kp[..., 0] >= width) | (kp[..., 1] < 0) | (kp[..., 1] >= height)
    missing |= outside
    out = np.concatenate([kp, conf[..., None]], axis=-1).astype(np.float32)
    out[missing] = 0.0
    return out
