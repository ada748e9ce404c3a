"""Drawing 79-point pose sequences: animated GIF / MP4 and a contact-sheet PNG.

Input is a shard pose ``(T, 79, 3)`` (x / width, y / height, confidence). Points and the skeleton edges of
:mod:`slp.pose.layout` are coloured by part; points with confidence 0 and the edges touching them are not
drawn, so a missed hand is visibly missing rather than collapsed to a corner.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from slp.cli_errors import UserError
from slp.pose.layout import EDGES, PART_COLORS, PART_NAMES, POINT_PART

BACKGROUND = (24, 24, 28)
_POINT_COLORS = [PART_COLORS[PART_NAMES[p]] for p in POINT_PART]


def draw_frame(frame: np.ndarray, width: int, height: int, label: str = "") -> Image.Image:
    """One frame ``(79, 3)`` drawn on a ``width × height`` canvas."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    xy = frame[:, :2].astype(np.float32) * np.array([width, height], dtype=np.float32)
    visible = frame[:, 2] > 0
    line = max(1, round(min(width, height) / 200))
    for a, b in EDGES:
        if visible[a] and visible[b]:
            draw.line([tuple(xy[a]), tuple(xy[b])], fill=_POINT_COLORS[b], width=line)
    radius = max(1.5, min(width, height) / 160)
    for i in np.flatnonzero(visible):
        x, y = xy[i]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_POINT_COLORS[i])
    if label:
        draw.text((6, 4), label, fill=(200, 200, 200))
    return image


def _check(pose: np.ndarray) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (79, 3) or pose.shape[0] < 1:
        raise ValueError(f"expected a (T, 79, 3) pose sequence, got shape {pose.shape}")
    return pose


def render_animation(pose: np.ndarray, out_path: str | Path, *, width: int, height: int, fps: float = 25.0) -> Path:
    """Animated ``.gif`` (Pillow) or ``.mp4`` (imageio + ffmpeg) of the sequence; returns the path."""
    pose = _check(pose)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = [draw_frame(f, width, height, f"{t + 1}/{len(pose)}") for t, f in enumerate(pose)]
    suffix = out.suffix.lower()
    if suffix == ".gif":
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    elif suffix == ".mp4":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise UserError(f"{out}: MP4 output needs imageio and imageio-ffmpeg: pip install 'slp[video]'") from None
        imageio.mimwrite(out, [np.asarray(f) for f in frames], fps=fps, macro_block_size=1)
    else:
        raise UserError(f"{out}: animation format {suffix!r} not supported (use .gif or .mp4)")
    return out


def render_contact_sheet(
    pose: np.ndarray, out_png: str | Path, *, width: int, height: int, columns: int = 6, frames: int = 12,
    tile_width: int = 240,
) -> Path:
    """A grid of ``frames`` evenly spaced frames as one PNG; returns the path."""
    pose = _check(pose)
    picks = np.unique(np.linspace(0, len(pose) - 1, min(frames, len(pose))).round().astype(int))
    tile_height = max(1, round(tile_width * height / width))
    columns = min(columns, len(picks))
    rows = math.ceil(len(picks) / columns)
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height), BACKGROUND)
    for n, t in enumerate(picks):
        tile = draw_frame(pose[t], tile_width, tile_height, f"t={t}")
        sheet.paste(tile, ((n % columns) * tile_width, (n // columns) * tile_height))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
