"""Drawing 79-point pose sequences: animated GIF / MP4 and a contact-sheet PNG, on a blank canvas or on the frames
of the video the points come from.

Input is a shard pose ``(T, 79, 3)`` (x / width, y / height, confidence). Points and the skeleton edges of
:mod:`slp.pose.layout` are coloured by part; points with confidence 0 and the edges touching them are not
drawn, so a missed hand is visibly missing rather than collapsed to a corner. Every render carries a legend of the
part colours (:data:`LEGEND`: which colour is the signer's right hand and which the left): in a corner of each
animation frame (under the frame when the frame is too small to spare the corner) and under a contact sheet. An
animation may carry a caption (a model's prediction, say) on a band below the frames.

With ``video``, each pose frame is drawn on its own frame of that video (PyAV decodes it; :func:`video_frames`
matches them by index, from ``video_start``, and by time when the pose's fps is not the video's), resized to the
render's size: the points land where the estimator saw them. :func:`recorded_video` is the video a ``.pose`` of
slp's extraction records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slp import DISTRIBUTION
from slp.cli_errors import UserError, file_problem
from slp.pose.layout import EDGES, PART_COLORS, PART_NAMES, POINT_PART

BACKGROUND = (24, 24, 28)
_POINT_COLORS = [PART_COLORS[PART_NAMES[p]] for p in POINT_PART]
#: The legend's entries: each part of :data:`slp.pose.layout.PART_NAMES` and what it is. COCO-WholeBody's left and
#: right (and those of every layout slp converts) are the signer's own, not the image's.
LEGEND: tuple[tuple[str, str], ...] = (
    ("right_hand", "signer's right hand"), ("left_hand", "signer's left hand"), ("body", "body"), ("face", "face"),
    ("mouth", "mouth"),
)
_LEGEND_BOX = (0, 0, 0, 170)  # a translucent dark box: the video shows through, the labels stay legible
_LABEL_STROKE = (0, 0, 0)


class VideoError(ValueError):
    """A video that cannot be drawn on (unreadable, or shorter than the pose); the message names it, in one line."""


def legend_entries() -> list[tuple[str, tuple[int, int, int]]]:
    """(label, RGB colour) of each entry of the legend, in its order."""
    return [(label, PART_COLORS[part]) for part, label in LEGEND]


def legend_font_size(width: int, height: int) -> int:
    """The legend's font size on a ``width × height`` frame."""
    return max(10, round(min(width, height) / 36))


def legend_image(font_size: int, max_width: int = 0) -> Image.Image:
    """The legend as an RGBA image: a colour swatch and a label per entry on a translucent dark box, the entries
    left to right in rows no wider than ``max_width`` pixels (0: one entry a row)."""
    font = ImageFont.load_default(size=font_size)
    pad, gap = max(3, font_size // 2), max(3, font_size // 3)
    widths = [font_size + gap + math.ceil(font.getlength(label)) for label, _ in legend_entries()]
    rows: list[list[int]] = [[]]
    for k, entry_width in enumerate(widths):
        row = rows[-1]
        used = sum(widths[j] for j in row) + 2 * pad * len(row)
        if row and (not max_width or pad + used + entry_width + pad > max_width):
            rows.append([k])
        else:
            row.append(k)
    step = round(font_size * 1.4)
    width = max(sum(widths[j] for j in row) + 2 * pad * len(row) for row in rows)
    image = Image.new("RGBA", (width, 2 * pad + step * len(rows) - (step - font_size)), _LEGEND_BOX)
    draw = ImageDraw.Draw(image)
    entries = legend_entries()
    for r, row in enumerate(rows):
        x, y = pad, pad + r * step
        for k in row:
            label, color = entries[k]
            draw.rectangle([x, y, x + font_size - 1, y + font_size - 1], fill=(*color, 255))
            draw.text((x + font_size + gap, y + font_size / 2), label, fill=(255, 255, 255, 255), font=font,
                      anchor="lm")
            x += widths[k] + 2 * pad
    return image


def _legend_band(width: int, font_size: int) -> Image.Image:
    """A ``width``-wide band with the legend on it, to go under a frame or a sheet."""
    legend = legend_image(font_size, width)
    band = Image.new("RGB", (width, legend.height), BACKGROUND)
    band.paste(legend, (0, 0), legend)
    return band


def draw_frame(frame: np.ndarray, width: int, height: int, label: str = "",
               background: np.ndarray | None = None) -> Image.Image:
    """One frame ``(79, 3)`` drawn on a ``width × height`` canvas: blank, or ``background`` (an RGB video frame,
    resized to the canvas)."""
    if background is None:
        image = Image.new("RGB", (width, height), BACKGROUND)
    else:
        image = Image.fromarray(background)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
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
        draw.text((6, 4), label, fill=(200, 200, 200), stroke_width=1, stroke_fill=_LABEL_STROKE)
    return image


def recorded_video(pose_path: str | Path) -> str:
    """The source video a ``.pose`` of slp's extraction records (its absolute path), ``""`` when it records none."""
    from slp.pose.convert import pose_provenance

    return pose_provenance(Path(pose_path).read_bytes(), "").video


def _video_index(t: int, start: int, pose_fps: float, video_fps: float) -> int:
    """The video frame under pose frame ``t``: ``start + t``, or the frame at the same time when the pose's fps is
    not the video's."""
    if pose_fps > 0 and video_fps > 0 and abs(pose_fps - video_fps) > 1e-3 * video_fps:
        return round((start + t) * video_fps / pose_fps)
    return start + t


def video_frames(path: str | Path, pose_frames: Sequence[int], *, pose_fps: float = 0.0,
                 start: int = 0) -> list[np.ndarray]:
    """The RGB frames of video ``path`` under ``pose_frames``: pose frame ``t`` is frame ``start + t`` of the video
    (decoded in order, as the extraction numbers them), or, when ``pose_fps`` is given and is not the video's fps,
    the video frame at the same time (``start`` then counts frames at ``pose_fps``). Raises :class:`VideoError`
    when the video does not read or is shorter than the pose."""
    import av

    if problem := file_problem(path):
        raise VideoError(f"{path}: {problem}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        wanted = [_video_index(int(t), start, pose_fps, float(rate) if rate else 0.0) for t in pose_frames]
        needed, last = set(wanted), max(wanted, default=-1)
        found: dict[int, np.ndarray] = {}
        decoded = 0
        try:
            for frame in container.decode(stream):
                if decoded in needed:
                    found[decoded] = frame.to_ndarray(format="rgb24")
                decoded += 1
                if decoded > last:
                    break
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{path}: not a readable video after {decoded} frames ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from None
    if decoded <= last:
        frame_of = pose_frames[wanted.index(last)]
        raise VideoError(f"{path}: {decoded} frames, but pose frame {frame_of} is video frame {last} "
                         f"(the pose starts at frame {start}): not the pose's video, or the wrong start")
    return [found[k] for k in wanted]


def _video_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the video's first frame."""
    (first,) = video_frames(path, [0])
    return first.shape[1], first.shape[0]


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


def _size(width: int | None, height: int | None, video: str | Path | None) -> tuple[int, int]:
    """The render's frame size: as given, else the video's."""
    if width is not None and height is not None:
        return width, height
    if video is None:
        raise ValueError("give the frame size (width and height), or a video to take it from")
    return _video_size(video)


def animation_frames(pose: np.ndarray, *, width: int | None = None, height: int | None = None, fps: float = 25.0,
                     caption: str = "", video: str | Path | None = None, video_start: int = 0) -> list[Image.Image]:
    """The frames of :func:`render_animation`: each pose frame on a ``width × height`` frame (default: the
    video's size), blank or its frame of ``video`` (see :func:`video_frames`; ``fps`` is the pose's), numbered,
    with the legend, and ``caption`` (when given) on a band below."""
    pose = _check(pose)
    width, height = _size(width, height, video)
    backgrounds = (video_frames(video, range(len(pose)), pose_fps=fps, start=video_start) if video is not None
                   else [None] * len(pose))
    font_size = legend_font_size(width, height)
    legend = legend_image(font_size)
    inside = legend.width <= width // 2 and legend.height <= height // 2  # else it would hide the signer
    bands = [] if inside else [_legend_band(width, font_size)]
    if caption:
        bands.append(caption_band(caption, width))
    frames = []
    for t, (frame, background) in enumerate(zip(pose, backgrounds)):
        image = draw_frame(frame, width, height, f"{t + 1}/{len(pose)}", background)
        if inside:
            margin = max(2, font_size // 2)
            image.paste(legend, (width - legend.width - margin, margin), legend)
        if bands:
            canvas = Image.new("RGB", (width, height + sum(b.height for b in bands)))
            canvas.paste(image, (0, 0))
            y = height
            for band in bands:
                canvas.paste(band, (0, y))
                y += band.height
            image = canvas
        frames.append(image)
    return frames


def render_animation(pose: np.ndarray, out_path: str | Path, *, width: int | None = None, height: int | None = None,
                     fps: float = 25.0, caption: str = "", video: str | Path | None = None,
                     video_start: int = 0) -> Path:
    """Animated ``.gif`` (Pillow) or ``.mp4`` (imageio + ffmpeg) of the sequence (:func:`animation_frames`: on the
    frames of ``video`` when given); returns the path."""
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"{out}: animation format {suffix!r} not supported (use .gif or .mp4)")
    if suffix == ".mp4":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise UserError(f"{out}: MP4 output needs imageio and imageio-ffmpeg: pip install '{DISTRIBUTION}[video]'"
                            ) from None
    frames = animation_frames(pose, width=width, height=height, fps=fps, caption=caption, video=video,
                              video_start=video_start)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    else:
        imageio.mimwrite(out, [np.asarray(f) for f in frames], fps=fps, macro_block_size=1)
    return out


def render_contact_sheet(
    pose: np.ndarray, out_png: str | Path, *, width: int | None = None, height: int | None = None, columns: int = 6,
    frames: int = 12, tile_width: int = 240, fps: float = 0.0, video: str | Path | None = None, video_start: int = 0,
) -> Path:
    """A grid of ``frames`` evenly spaced frames as one PNG, on their frames of ``video`` when given (``fps``: the
    pose's, see :func:`video_frames`), with the legend under it; returns the path."""
    pose = _check(pose)
    width, height = _size(width, height, video)
    picks = np.unique(np.linspace(0, len(pose) - 1, min(frames, len(pose))).round().astype(int))
    backgrounds = (video_frames(video, picks.tolist(), pose_fps=fps, start=video_start) if video is not None
                   else [None] * len(picks))
    tile_height = max(1, round(tile_width * height / width))
    columns = min(columns, len(picks))
    rows = math.ceil(len(picks) / columns)
    band = _legend_band(columns * tile_width, legend_font_size(tile_width, tile_height))
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height + band.height), BACKGROUND)
    for n, (t, background) in enumerate(zip(picks, backgrounds)):
        tile = draw_frame(pose[t], tile_width, tile_height, f"t={t}", background)
        sheet.paste(tile, ((n % columns) * tile_width, (n // columns) * tile_height))
    sheet.paste(band, (0, rows * tile_height))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
