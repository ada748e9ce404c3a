"""`slp-curate render` takes what `read_pose` reads, folders of per-frame OpenPose JSON included."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_curation.cli import main as curate


def _openpose_folder(folder, frames: int = 3) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for t in range(frames):
        person = {name: np.column_stack([rng.uniform(100, 500, n), rng.uniform(100, 400, n), np.full(n, 0.9)])
                  .reshape(-1).tolist()
                  for name, n in (("pose_keypoints_2d", 25), ("face_keypoints_2d", 70),
                                  ("hand_left_keypoints_2d", 21), ("hand_right_keypoints_2d", 21))}
        (folder / f"clip_{t:012d}_keypoints.json").write_text(json.dumps({"people": [person]}))


def test_render_reads_an_openpose_folder(tmp_path, capsys):
    _openpose_folder(tmp_path / "clip")
    curate(["render", str(tmp_path / "clip"), "--format", "openpose_json", "--fps", "25", "--width", "640",
            "--height", "480", "--out", str(tmp_path / "out")])
    assert "3 frames" in capsys.readouterr().out and (tmp_path / "out_sheet.png").is_file()


def test_render_of_a_folder_as_a_pose_file_is_one_line(tmp_path, capsys):
    (tmp_path / "clip.pose").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        curate(["render", str(tmp_path / "clip.pose"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"slp-curate: error: {tmp_path / 'clip.pose'}: is a directory, not a file"
