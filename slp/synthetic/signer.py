"""Procedural 2-D signers in the COCO-WholeBody 133 layout.

A *gloss* is a seeded recipe: for each hand a wrist trajectory (control points relative to the shoulders, in
shoulder widths), a handshape sequence (per-finger curl and spread keyframes, a palm orientation), a mouthing
pattern (mouth-opening keyframes and a lip shape) and, for some glosses, a facial expression. A *signer* is a seeded
body and camera: proportions, position, scale and roll in the frame, the frame size, speed, coordinate noise and
detection failures. Rendering a gloss with a signer gives the keypoints of every frame in pixels; the same seeds
always give the same numbers.

The per-frame controls are the wrists, handshapes and palm angles of both hands, the mouth opening, the lip shape,
puffed cheeks, the head's yaw and pitch and the brows. Only the jaw, nose tip and inner lips of the face are among
the 79 points the models read, so a non-manual signal reaches them through the mouth, the cheeks (the jaw contour)
and the head's turn and tilt (which also moves the body's nose, eyes and ears).
"""

from __future__ import annotations

import dataclasses
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
    lip_shape: float = 0.0  # -1 spread ("ee") … 1 rounded ("oo")
    cheek_puff: np.ndarray | None = None  # (K,) puffed-cheek keyframes in [0, 1]; None: relaxed


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
    width: int = 1280  # the camera's frame, pixels
    height: int = 720
    roll: float = 0.0  # camera roll, radians
    arm_lengths: tuple[float, float] | None = None  # upper arm, forearm (shoulder widths): elbows by 2-link IK
    motion_dropout: float = 0.0  # extra probability of losing a hand at fast wrist motion
    finger_occlusion: float = 0.0  # confidence a fully curled finger loses (its tip hidden behind the palm)
    face_noise: float = 1.0  # face landmarks' noise relative to the body's (landmark detectors are finer)
    jaw_follows_mouth: bool = False  # an open mouth drops the chin


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


def near_copy(gloss: GlossRecipe, rng: np.random.Generator) -> GlossRecipe:
    """A gloss signed almost like ``gloss`` (NLA-SLR's visually indistinguishable signs): its wrist paths moved by
    a few hundredths of a shoulder width and one finger of one dominant-hand keyframe bent half a step more or
    less."""
    shapes = gloss.handshapes.copy()
    key, finger = int(rng.integers(shapes.shape[1])), int(rng.integers(5))
    shapes[0, key, finger] += 0.5 if shapes[0, key, finger] < 0.5 else -0.5
    return dataclasses.replace(gloss, wrist_paths=gloss.wrist_paths + rng.normal(0, 0.05, gloss.wrist_paths.shape),
                               handshapes=shapes)


def puffed_cheeks(rng: np.random.Generator) -> np.ndarray:
    """``(K,)`` keyframes of cheeks puffed during the sign: in, held, out (a facial expression of the face alone)."""
    return np.array([0.0, 1.0, 1.0, 0.0]) * rng.uniform(0.7, 1.0)


def make_signer(rng: np.random.Generator, noise: float, point_dropout: float, hand_dropout: float,
                width: int = 1280, height: int = 720) -> SignerStyle:
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
        width=width,
        height=height,
    )


# Where a signer stands in frames of each shape: (shoulder width as a fraction of the frame width, shoulder height
# as a fraction of the frame height). Portrait frames (Phoenix's 210 × 260) are cropped close to the signer.
def _framing(width: int, height: int) -> tuple[tuple[float, float], tuple[float, float]]:
    aspect = width / height
    if aspect < 1.0:
        return (0.40, 0.50), (0.46, 0.56)
    if aspect < 1.5:
        return (0.22, 0.30), (0.55, 0.65)
    return (0.17, 0.25), (0.58, 0.68)


def vary_signer(signer: SignerStyle, rng: np.random.Generator, cameras: tuple[tuple[int, int], ...],
                scale_range: float, max_roll_degrees: float, anatomical_arms: bool, motion_dropout: float,
                finger_occlusion: float) -> SignerStyle:
    """The signer filmed by one of ``cameras`` at a drawn scale and roll, with anatomical arms, face landmarks
    finer than body joints and motion- and occlusion-driven detector failures; draws from its own ``rng``, so the
    base signer is unchanged."""
    width, height = cameras[int(rng.integers(len(cameras)))] if cameras else (signer.width, signer.height)
    (sw_lo, sw_hi), (sy_lo, sy_hi) = _framing(width, height)
    scale = 1.0 + rng.uniform(-scale_range, scale_range)
    return dataclasses.replace(
        signer,
        width=int(width),
        height=int(height),
        shoulder_width=float(rng.uniform(sw_lo, sw_hi) * scale),
        shoulder_y=float(rng.uniform(sy_lo, sy_hi)),
        roll=float(np.deg2rad(rng.uniform(-max_roll_degrees, max_roll_degrees))),
        arm_lengths=(float(rng.uniform(0.72, 0.82)), float(rng.uniform(0.62, 0.72))) if anatomical_arms else None,
        motion_dropout=float(motion_dropout * rng.uniform(0.5, 1.5)),
        finger_occlusion=float(finger_occlusion),
        face_noise=0.3,
        jaw_follows_mouth=True,
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
    """Per-frame controls of a gloss at normalised times ``t``: wrists, handshapes, orientations, mouth, lips,
    cheeks, head and brows (head and brows neutral: sentence-level grammar moves them, :func:`add_question_marking`)."""
    cheeks = np.zeros(len(t)) if gloss.cheek_puff is None else _smooth_interp(gloss.cheek_puff, t)
    return {
        "wrists": np.stack([_smooth_interp(gloss.wrist_paths[h], t) for h in range(2)], axis=1),  # (T, 2, 2)
        "shapes": np.stack([_smooth_interp(gloss.handshapes[h], t) for h in range(2)], axis=1),  # (T, 2, 6)
        "angles": np.stack([_smooth_interp(gloss.orientations[h], t) for h in range(2)], axis=1),  # (T, 2)
        "mouth": _smooth_interp(gloss.mouthing, t),  # (T,)
        "lips": np.full(len(t), gloss.lip_shape),  # (T,)
        "cheeks": cheeks,  # (T,) 0 relaxed … 1 puffed
        "head": np.zeros((len(t), 2)),  # (T, 2) yaw, pitch
        "brows": np.zeros(len(t)),  # (T,) 0 neutral … 1 raised
    }


def rest_controls(num_frames: int) -> dict[str, np.ndarray]:
    """Hands resting low in front of the body, mouth closed, face neutral (before, between and after signs)."""
    return {
        "wrists": np.tile(np.array([[0.35, 0.9], [-0.35, 0.9]]), (num_frames, 1, 1)),
        "shapes": np.tile(np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.0]), (num_frames, 2, 1)),
        "angles": np.tile(np.array([0.0, np.pi]), (num_frames, 1)),
        "mouth": np.zeros(num_frames),
        "lips": np.zeros(num_frames),
        "cheeks": np.zeros(num_frames),
        "head": np.zeros((num_frames, 2)),
        "brows": np.zeros(num_frames),
    }


# A yes/no question: brows raised and the head tilted forward over the whole sentence (pitch, radians).
QUESTION_PITCH = 0.25


def add_question_marking(controls: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Raised brows and a forward head tilt from frame ``start`` to ``stop``, eased in and out over 4 frames."""
    n = len(controls["brows"])
    frames = np.arange(n)
    ramp = np.clip(np.minimum(frames - start + 1, stop - frames) / 4.0, 0.0, 1.0)
    out = dict(controls)
    out["brows"] = np.maximum(controls["brows"], ramp)
    out["head"] = controls["head"] + np.stack([np.zeros(n), QUESTION_PITCH * ramp], axis=-1)
    return out


def blend_controls(a: dict[str, np.ndarray], b: dict[str, np.ndarray], num_frames: int,
                   anticipation: float = 0.0) -> dict[str, np.ndarray]:
    """A transition of ``num_frames`` from the last frame of ``a`` to the first frame of ``b``. With
    ``anticipation`` > 0 the hands take the next sign's shape and orientation early in the transition, before the
    wrists arrive (co-articulation)."""
    t = np.linspace(0, 1, num_frames + 2)[1:-1]
    early = 1.0 - (1.0 - t) ** (1.0 + 2.0 * anticipation)
    return {k: _smooth_interp(np.stack([a[k][-1], b[k][0]]), early if k in ("shapes", "angles") else t) for k in a}


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


def _face_points(center: np.ndarray, scale: float, controls: dict[str, np.ndarray], jaw_follows_mouth: bool
                 ) -> np.ndarray:
    """``(T, 68, 2)`` iBUG-68 face: jaw, brows, nose, eyes, outer and inner lips. The mouth opens and takes its lip
    shape, puffed cheeks widen the lower jaw contour, the brows rise, and the head's yaw and pitch move each point by
    its depth on a head-shaped ellipsoid (the nose tip and lips move most, the jaw's ends least).
    ``jaw_follows_mouth``: an open mouth drops the chin."""
    mouth, lips, head, brows = controls["mouth"], controls["lips"], controls["head"], controls["brows"]
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
    width = (1.0 - 0.3 * lips)[:, None]  # rounded lips are narrower and taller, spread lips wider and flatter
    height = (1.0 + 0.4 * lips)[:, None]
    pts[:, 48:60] = np.stack([0.22 * width * np.cos(lip), 0.33 + (0.05 * height + 0.08 * opening) * np.sin(lip)], -1)
    inner = np.linspace(0, 2 * np.pi, 9)[:-1]
    pts[:, 60:68] = np.stack([0.14 * width * np.cos(inner), 0.33 + (0.01 * height + 0.08 * opening) * np.sin(inner)],
                             axis=-1)
    pts[:, 17:27, 1] -= 0.1 * brows[:, None]
    if np.any(controls["cheeks"]):  # the cheeks bulge most at the jaw's middle height, not at the chin
        bulge = np.sin(np.linspace(0, np.pi, 17)) ** 2 * (1.0 - np.abs(np.linspace(-1, 1, 17)) ** 8)
        pts[:, 0:17, 0] *= 1.0 + 0.18 * controls["cheeks"][:, None] * bulge
    if jaw_follows_mouth:  # the chin drops with the mouth, the jaw's upper ends stay
        pts[:, 0:17, 1] += 0.12 * opening * np.clip(pts[:, 0:17, 1] / 0.57, 0.0, 1.0)
    if np.any(head):
        depth = np.sqrt(np.clip(1.0 - (pts[..., 0] / 0.55) ** 2 - (pts[..., 1] / 0.7) ** 2, 0.0, 1.0)) * 0.5
        depth[:, 30] += 0.25  # the nose tip stands out
        yaw, pitch = head[:, :1], head[:, 1:]
        pts[..., 0] = pts[..., 0] * np.cos(yaw) + depth * np.sin(yaw)
        pts[..., 1] = pts[..., 1] * np.cos(pitch) + depth * np.sin(pitch)
    return center[:, None, :] + scale * pts


def _elbows(shoulders: np.ndarray, wrists: np.ndarray, upper: float, fore: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-link arm: wrists pulled within reach of the shoulders, and the elbows (bending down and outward) that put
    an upper arm of length ``upper`` and a forearm of length ``fore`` between them; ``(T, 2)`` each, pixels."""
    offset = wrists - shoulders
    reach = np.linalg.norm(offset, axis=-1, keepdims=True)
    limit = 0.98 * (upper + fore)
    wrists = shoulders + offset * np.minimum(1.0, limit / np.maximum(reach, 1e-6))
    d = np.clip(np.minimum(reach, limit), abs(upper - fore) + 1e-6, None)
    direction = (wrists - shoulders) / d
    along = (upper**2 - fore**2 + d**2) / (2 * d)
    across = np.sqrt(np.clip(upper**2 - along**2, 0.0, None))
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
    normal = np.where(normal[:, 1:] < 0, -normal, normal)  # elbows hang below the shoulder-wrist line
    return shoulders + along * direction + across * normal, wrists


def _hand_loss_probability(wrists: np.ndarray, signer: SignerStyle, sw: float) -> np.ndarray:
    """``(T, 2)`` per-frame probability that a detector loses each hand: the signer's base rate, plus up to
    ``motion_dropout`` as the wrist moves faster (motion blur), from 0.04 to 0.12 shoulder widths per frame."""
    speed = np.zeros(wrists.shape[:2])
    speed[1:] = np.linalg.norm(np.diff(wrists, axis=0), axis=-1) / sw
    speed[0] = speed[1] if len(speed) > 1 else 0.0
    return signer.hand_dropout + signer.motion_dropout * np.clip((speed - 0.04) / 0.08, 0.0, 1.0)


def render_signer(controls: dict[str, np.ndarray], signer: SignerStyle, rng: np.random.Generator) -> np.ndarray:
    """Keypoints ``(T, 133, 3)`` float32 in pixels of the signer's frame (x, y, confidence) for per-frame controls."""
    t = controls["mouth"].shape[0]
    width, height = signer.width, signer.height
    sw = signer.shoulder_width * width  # pixels per shoulder width
    centre = np.array([signer.center_x * width, signer.shoulder_y * height])
    kp = np.zeros((t, NUM_WHOLEBODY_POINTS, 2))
    sway = 0.02 * sw * np.sin(np.linspace(0, 2 * np.pi, t) + rng.uniform(0, 2 * np.pi))[:, None]
    shoulders = centre + np.array([[0.5 * sw, 0.0], [-0.5 * sw, 0.0]])  # left (5), right (6) from the viewer
    head = centre + np.array([0.0, -0.75 * sw * signer.head_scale])
    # The body's head points turn with the face (nose most, ears least).
    turn = sw * signer.head_scale * 0.45 * np.sin(controls["head"])
    kp[:, 0] = head + np.array([0, 0.05 * sw]) + sway + 0.75 * turn
    for i, dx, dy in ((1, 0.1, -0.05), (2, -0.1, -0.05), (3, 0.2, 0.0), (4, -0.2, 0.0)):
        kp[:, i] = head + sw * np.array([dx, dy]) * signer.head_scale + sway + (0.5 if i < 3 else 0.1) * turn
    kp[:, 5], kp[:, 6] = shoulders[0] + sway, shoulders[1] + sway
    wrists = centre + (controls["wrists"] * signer.arm_reach + signer.style_offset) * sw  # (T, 2, 2)
    wrists[:, 0, 0] = centre[0] - (wrists[:, 0, 0] - centre[0])  # dominant = right hand, on the viewer's left
    wrists[:, 1, 0] = centre[0] - (wrists[:, 1, 0] - centre[0])
    for hand, (sh, el, wr) in enumerate(((6, 8, 10), (5, 7, 9))):
        shoulder = kp[:, sh]
        if signer.arm_lengths is None:  # the elbow between shoulder and wrist, pushed out and down
            mid = (shoulder + wrists[:, hand]) / 2
            outward = np.sign(shoulder[:, :1] - centre[0]) * 0.25 * sw
            kp[:, el] = mid + np.concatenate([outward, np.full_like(outward, 0.3 * sw)], axis=-1)
        else:
            upper, fore = (length * sw for length in signer.arm_lengths)
            kp[:, el], wrists[:, hand] = _elbows(shoulder, wrists[:, hand], upper, fore)
        kp[:, wr] = wrists[:, hand]
    kp[:, 11], kp[:, 12] = centre + np.array([0.35 * sw, 1.5 * sw]), centre + np.array([-0.35 * sw, 1.5 * sw])
    for i, base in ((13, 11), (14, 12), (15, 11), (16, 12)):  # knees, ankles: below the frame
        kp[:, i] = kp[:, base] + np.array([0.0, (1.2 if i < 15 else 2.4) * sw])
    kp[:, 17:23] = kp[:, [15, 15, 15, 16, 16, 16]] + np.array([0.0, 0.1 * sw])
    kp[:, 23:91] = _face_points(head + sway + np.array([0, 0.05 * sw]), 0.45 * sw * signer.head_scale, controls,
                                jaw_follows_mouth=signer.jaw_follows_mouth)
    hand_size = 0.42 * sw
    kp[:, 112:133] = _hand_points(wrists[:, 0], controls["shapes"][:, 0], controls["angles"][:, 0], hand_size, -1.0)
    kp[:, 91:112] = _hand_points(wrists[:, 1], controls["shapes"][:, 1], controls["angles"][:, 1], hand_size, 1.0)
    noise = rng.normal(0, signer.noise * sw, kp.shape)
    noise[:, 23:91] *= signer.face_noise
    kp += noise

    conf = np.clip(rng.normal(0.85, 0.08, (t, NUM_WHOLEBODY_POINTS)), 0.3, 1.0)
    conf[:, 11:23] *= 0.4  # lower body out of frame: weak detections
    missing = rng.random((t, NUM_WHOLEBODY_POINTS)) < signer.point_dropout
    if signer.arm_lengths is None:
        for lo, hi in ((91, 112), (112, 133)):
            missing[:, lo:hi] |= (rng.random(t) < signer.hand_dropout)[:, None]
    else:
        # One arm: the hand's wrist point is the body's wrist point, and fast hands are lost more often.
        kp[:, 112], kp[:, 91] = kp[:, 10], kp[:, 9]
        lost = rng.random((t, 2)) < _hand_loss_probability(wrists, signer, sw)
        missing[:, 112:133] |= lost[:, :1]
        missing[:, 91:112] |= lost[:, 1:]
    if signer.finger_occlusion > 0:
        # A curled finger's outer joints hide behind the palm: lower confidence and a less precise position.
        for hand, first in ((0, 112), (1, 91)):
            curl = controls["shapes"][:, hand, :5]  # (T, 5)
            joints = first + 2 + 4 * np.arange(5)[:, None] + np.arange(3)[None, :]  # joints 2-4 of each finger
            hidden = np.repeat(signer.finger_occlusion * curl, 3, axis=1)  # (T, 15)
            conf[:, joints.ravel()] *= 1.0 - hidden
            kp[:, joints.ravel()] += rng.normal(0, 1, (t, 15, 2)) * (3 * signer.noise * sw * hidden)[..., None]
    if signer.roll:
        rotation = np.array([[np.cos(signer.roll), -np.sin(signer.roll)], [np.sin(signer.roll), np.cos(signer.roll)]])
        kp = centre + (kp - centre) @ rotation.T
    outside = (kp[..., 0] < 0) | (kp[..., 0] >= width) | (kp[..., 1] < 0) | (kp[..., 1] >= height)
    missing |= outside
    out = np.concatenate([kp, conf[..., None]], axis=-1).astype(np.float32)
    out[missing] = 0.0
    return out
