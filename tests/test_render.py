"""Rendering 79-point sequences: GIF frames and size, part colours, missing points not drawn, the legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from slp.pose.layout import LEFT_HAND, PART_COLORS, PART_NAMES, RIGHT_HAND
from slp.render import (
    BACKGROUND,
    animation_frames,
    legend_entries,
    legend_font_size,
    legend_image,
    render_animation,
    render_contact_sheet,
)
from slp.synthetic import SyntheticConfig, generate_isolated


def _pose():
    return next(generate_isolated(SyntheticConfig(num_glosses=1, num_signers=4, repetitions=1))).pose


def _colors(image: Image.Image) -> set:
    return {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}


def test_gif_has_every_frame_at_the_requested_size(tmp_path):
    pose = _pose()
    path = render_animation(pose, tmp_path / "sign.gif", width=320, height=180, fps=25)
    with Image.open(path) as gif:
        assert gif.size == (320, 180) and gif.n_frames == len(pose)


def test_contact_sheet_colours_parts_and_skips_missing_hand(tmp_path):
    pose = _pose().copy()
    pose[:, RIGHT_HAND, 2] = 1.0
    pose[:, RIGHT_HAND, :2] = np.clip(pose[:, RIGHT_HAND, :2], 0.05, 0.95)
    tiles = (0, 0, 4 * 240, 135)  # one row of four 240 × 135 tiles; the legend is on a band under them
    sheet = Image.open(render_contact_sheet(pose, tmp_path / "sheet.png", width=1280, height=720, frames=4))
    assert sheet.size[1] > 135
    colors = _colors(sheet.crop(tiles))
    for part in ("face", "right_hand", "body"):
        assert PART_COLORS[part] in colors
    pose[:, LEFT_HAND, 2] = 0.0  # the left hand is never detected
    missing = Image.open(render_contact_sheet(pose, tmp_path / "missing.png", width=1280, height=720, frames=4))
    assert PART_COLORS["left_hand"] not in _colors(missing.crop(tiles))
    # the legend still says which colour the left hand would be
    assert PART_COLORS["left_hand"] in _colors(missing.crop((0, 135, missing.width, missing.height)))


def test_legend_names_each_part_with_its_colour():
    entries = dict(legend_entries())
    assert entries["signer's right hand"] == PART_COLORS["right_hand"] == (80, 150, 250)
    assert entries["signer's left hand"] == PART_COLORS["left_hand"] == (80, 200, 120)
    assert (entries["body"], entries["face"], entries["mouth"]) == (PART_COLORS["body"], PART_COLORS["face"],
                                                                    PART_COLORS["mouth"])
    assert sorted(entries.values()) == sorted(PART_COLORS[p] for p in PART_NAMES)  # every part, once
    legend = legend_image(12)
    assert {c for c in entries.values()} <= _colors(legend)
    assert legend_image(12, max_width=2000).height < legend.height  # one row when it is wide enough


def test_every_animation_frame_carries_the_legend_in_its_corner(tmp_path):
    pose = _pose().copy()
    pose[..., 2] = 0.0  # nothing drawn: whatever part colour shows is the legend's
    frames = animation_frames(pose, width=640, height=360, fps=25)
    legend = legend_image(legend_font_size(640, 360))
    for frame in (frames[0], frames[-1]):
        assert frame.size == (640, 360)
        corner = frame.crop((640 - legend.width - 10, 0, 640, legend.height + 10))
        assert set(PART_COLORS.values()) <= _colors(corner)
        assert _colors(frame.crop((0, 360 // 2, 640, 360))) == {BACKGROUND}  # elsewhere: the blank canvas
    with Image.open(render_animation(pose, tmp_path / "s.gif", width=640, height=360, fps=25)) as gif:
        gif.seek(len(pose) - 1)
        corner = np.asarray(gif.convert("RGB").crop((640 - legend.width - 10, 0, 640, legend.height + 10)))
        for color in PART_COLORS.values():  # through the GIF palette: within a few levels
            assert (np.abs(corner.astype(int) - color).max(axis=-1) <= 8).any(), color


def test_a_frame_too_small_for_a_corner_legend_gets_it_on_a_band_below():
    pose = _pose().copy()
    pose[..., 2] = 0.0
    (frame, *_) = animation_frames(pose, width=96, height=64, fps=25, caption="HELLO")
    assert frame.width == 96 and frame.height > 64
    assert not set(PART_COLORS.values()) & _colors(frame.crop((0, 0, 96, 64)))  # the frame is left clear
    assert set(PART_COLORS.values()) <= _colors(frame.crop((0, 64, 96, frame.height)))
