"""Rendering 79-point sequences: GIF frames and size, part colours, missing points not drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image

from slp.pose.layout import LEFT_HAND, PART_COLORS, RIGHT_HAND
from slp.render import render_animation, render_contact_sheet
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
    sheet = Image.open(render_contact_sheet(pose, tmp_path / "sheet.png", width=1280, height=720, frames=4))
    colors = _colors(sheet)
    for part in ("face", "right_hand", "body"):
        assert PART_COLORS[part] in colors
    pose[:, LEFT_HAND, 2] = 0.0  # the left hand is never detected
    missing = Image.open(render_contact_sheet(pose, tmp_path / "missing.png", width=1280, height=720, frames=4))
    assert PART_COLORS["left_hand"] not in _colors(missing)
