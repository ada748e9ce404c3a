"""MediaPipe extraction of real sign videos, checked against MMPose's predictions for the same frames.

Skips when MediaPipe's venv is missing (``make mediapipe-venv``; ``make test`` builds it) or the real data is.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from slp.extract.backends import MEDIAPIPE_LAYOUT, BackendSpec, BackendUnavailable, find_mediapipe_python
from slp.extract.pipeline import VideoJob, output_path, run_extraction
from slp.pose.convert import Provenance, pose_provenance
from slp.pose.layout import PART_SLICES, wholebody_to_79
from slp.pose.readers import read_mmpose_json, read_pose
from tests.extract_fakes import unavailable

REAL = {"FOOTBALL": (640, 360, 62), "SOUP": (320, 240, 41)}
#: MMPose's hand counts as detected when its points' mean score reaches this (its scores are heatmap peaks).
REFERENCE_HAND_SCORE = 0.3
PCK_ALPHA = 0.2


@pytest.fixture(scope="module")
def mediapipe_run(realdata, tmp_path_factory):
    """(output folder, summary) of the mediapipe backend on FOOTBALL.mp4 and SOUP.mp4."""
    if find_mediapipe_python() is None:
        unavailable("MediaPipe's venv is missing: run `make mediapipe-venv` (or set SLP_MEDIAPIPE_PYTHON)")
    out = tmp_path_factory.mktemp("mediapipe")
    jobs = [VideoJob(str(realdata / "videos" / f"{name}.mp4"), name) for name in REAL]
    try:
        summary = run_extraction(jobs, out, BackendSpec("mediapipe"), progress=False)
    except BackendUnavailable as exc:
        unavailable(f"MediaPipe does not run here: {exc}")
    return out, summary


def pck_table(pairs) -> dict[str, dict[str, float]]:
    """PCK@0.2 per part of the 79 kept points, pooled over ``(ours, reference)`` pairs of ``(T, 133, 3)`` arrays.

    A point counts where both estimators detect it; its threshold is 0.2 × the longer side of the reference part's
    box in that frame. Hands count only on frames where both estimators detect the hand; ``detected`` is the
    fraction of frames where ours does."""
    table = {}
    for part, part_slice in PART_SLICES.items():
        hits = counted = detected = frames = 0
        for ours, reference in pairs:
            a, b = wholebody_to_79(ours)[:, part_slice], wholebody_to_79(reference)[:, part_slice]
            size = np.ptp(b[..., :2], axis=1).max(axis=-1)
            close = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) < PCK_ALPHA * size[:, None]
            both = (a[..., 2] > 0) & (b[..., 2] > 0)
            if part.endswith("hand"):
                ours_hand = (a[..., 2] > 0).any(axis=-1)
                both &= (ours_hand & (b[..., 2].mean(axis=-1) >= REFERENCE_HAND_SCORE))[:, None]
                detected += int(ours_hand.sum())
            else:
                detected += int((a[..., 2] > 0).any(axis=-1).sum())
            frames += len(a)
            hits += int((close & both).sum())
            counted += int(both.sum())
        table[part] = {"pck": hits / counted, "points": counted, "detected": detected / frames}
    return table


def test_mediapipe_points_match_mmpose_on_real_video(realdata, mediapipe_run):
    out, summary = mediapipe_run
    assert summary["extracted"] == 2 and summary["failed"] == 0
    pairs = []
    for name, (width, height, frames) in REAL.items():
        ours = read_pose(output_path(out, name))  # the curation reader reads the output
        assert (ours.width, ours.height, ours.num_frames) == (width, height, frames)
        assert ours.fps == pytest.approx(29.97, abs=1e-4)
        reference = read_mmpose_json(realdata / "poses" / f"{name}.mmpose_wholebody133.predictions.json",
                                     fps=29.97, width=width, height=height)
        pairs.append((ours.keypoints, reference.keypoints))
        provenance = pose_provenance(output_path(out, name).read_bytes(), "coco_wholebody_133")
        assert provenance.layout == MEDIAPIPE_LAYOUT and provenance.estimator.startswith("mediapipe")
        assert provenance == Provenance(MEDIAPIPE_LAYOUT, summary["estimators"][0],
                                        os.path.abspath(realdata / "videos" / f"{name}.mp4"))
    table = pck_table(pairs)
    print("\npart        PCK@0.2  points  detected")
    for part, row in table.items():
        print(f"{part:<11} {row['pck']:7.3f} {row['points']:7d} {row['detected']:9.3f}")
    assert table["body"]["pck"] >= 0.95
    for hand in ("left_hand", "right_hand"):
        assert table[hand]["detected"] >= 0.8, hand
        assert table[hand]["pck"] >= 0.75, hand


def test_swapped_hands_would_fail_the_hand_check(realdata, mediapipe_run):
    """The check above tells a left / right swap apart: the same output with its hands exchanged falls far below."""
    out, _ = mediapipe_run
    pairs = []
    for name, (width, height, _) in REAL.items():
        ours = read_pose(output_path(out, name)).keypoints.copy()
        ours[:, 91:112], ours[:, 112:133] = ours[:, 112:133].copy(), ours[:, 91:112].copy()
        reference = read_mmpose_json(realdata / "poses" / f"{name}.mmpose_wholebody133.predictions.json",
                                     fps=29.97, width=width, height=height)
        pairs.append((ours, reference.keypoints))
    table = pck_table(pairs)
    assert table["left_hand"]["pck"] < 0.2 and table["right_hand"]["pck"] < 0.2


@pytest.mark.slow
def test_ray_engine_writes_the_same_mediapipe_files(realdata, mediapipe_run, tmp_path, local_ray):
    out, _ = mediapipe_run
    jobs = [VideoJob(str(realdata / "videos" / f"{name}.mp4"), name) for name in REAL]
    local_ray(num_cpus=2)
    summary = run_extraction(jobs, tmp_path, BackendSpec("mediapipe"), engine="ray", workers=2, progress=False)
    assert summary["extracted"] == 2
    for name in REAL:
        assert output_path(tmp_path, name).read_bytes() == output_path(out, name).read_bytes()
