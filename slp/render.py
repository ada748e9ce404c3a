"""Drawing 79-point pose sequences: animated GIF / MP4 and a contact-sheet PNG.

Input is a shard pose ``(T, 79, 3)`` (x / width, y / height, confidence). Points and the skeleton edges of
:mod:`slp.pose.layout` are coloured by part; points with confidence 0 and the edges touching them are not
drawn, so a missed hand is visibly missing rather than collapsed to a corner. An animation may carry a caption
(a model's prediction, say) on a band below the frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels: broken between words, and inside a word (a sentence
    without spaces, a long gloss) only where the word alone is wider."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # only a word wider than a whole line is cut
                if line and font.getlength(line + char) > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def caption_band(text: str, width: int) -> Image.Image:
    """A ``width``-wide band with ``text`` wrapped on it, to go under the frames of an animation."""
    size = max(10, round(width / 28))
    font = ImageFont.load_default(size=size)
    margin = max(4, size // 2)
    lines = _wrap(text, font, width - 2 * margin)
    step = round(size * 1.25)
    band = Image.new("RGB", (width, 2 * margin + step * len(lines)), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for k, line in enumerate(lines):
        draw.text((margin, margin + k * step), line, fill=(255, 255, 255), font=font)
    return band


def _check(pose: np.ndarray) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (79, 3) or pose.shape[0] < 1:
        raise ValueError(f"expected a (T, 79, 3) pose sequence, got shape {pose.shape}")
    return pose


def render_animation(pose: np.ndarray, out_path: str | Path, *, width: int, height: int, fps: float = 25.0,
                     caption: str = "") -> Path:
    """Animated ``.gif`` (Pillow) or ``.mp4`` (imageio + ffmpeg) of the sequence, with ``caption`` (when given) on a
    band below the frames; returns the path."""
    pose = _check(pose)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = [draw_frame(f, width, height, f"{t + 1}/{len(pose)}") for t, f in enumerate(pose)]
    if caption:
        band = caption_band(caption, width)
        framed = []
        for frame in frames:
            canvas = Image.new("RGB", (width, height + band.height))
            canvas.paste(frame, (0, 0))
            canvas.paste(band, (0, height))
            framed.append(canvas)
        frames = framed
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
