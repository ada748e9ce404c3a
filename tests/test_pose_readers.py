"""Readers of 133-point sources: real files from ../shared/realdata, and own fixtures in the same formats."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from slp.pose.readers import PoseFormatError, PoseSequence, read_pickle_collection, read_pose, to_shard_pose

REAL = {"FOOTBALL": (640, 360), "SOUP": (320, 240)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_pose_file_and_mmpose_json_give_the_same_79_points(realdata, name):
    width, height = REAL[name]
    from_pose = read_pose(realdata / "poses" / f"{name}.mmpose_wholebody133.pose")
    from_json = read_pose(
        realdata / "poses" / f"{name}.mmpose_wholebody133.predictions.json", fps=29.97, width=width, height=height
    )
    assert (from_pose.width, from_pose.height) == (width, height)
    assert from_pose.fps == pytest.approx(29.97, abs=1e-3)
    a, b = to_shard_pose(from_pose), to_shard_pose(from_json)
    assert a.shape == b.shape == (from_pose.num_frames, 79, 3) and a.dtype == np.float16
    # Within float16 rounding of values in [0, 1].
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-3)
    assert from_json.keypoints[..., 2].max() <= 1.0  # MMPose scores above 1.0 are clipped


def test_openpifpaf_missing_points_come_out_as_confidence_zero(realdata):
    seq = read_pose(realdata / "poses" / "SOUP.openpifpaf_wholebody133.pose")
    conf = seq.keypoints[..., 2]
    assert not np.isnan(seq.keypoints).any()
    assert 0.15 < (conf == 0).mean() < 0.3  # SOURCES.md: 22 % masked
    assert (seq.keypoints[conf == 0][:, :2] == 0).all()
    shard = to_shard_pose(seq)
    assert np.isfinite(shard).all() and (shard[..., 2] == 0).any()


@pytest.mark.parametrize("name, layout", [("tests_openpose.pose", "openpose_137"),
                                          ("colin-SAD.pose", "mediapipe_holistic_"),
                                          ("FOOTBALL.mediapipe_holistic.pose", "mediapipe_holistic_")])
def test_mediapipe_and_openpose_files_are_read_as_coco_wholebody_recording_their_layout(realdata, name, layout):
    seq = read_pose(realdata / "poses" / name)
    assert seq.keypoints.shape[1:] == (133, 3) and seq.layout.startswith(layout) and seq.estimator
    assert (seq.keypoints[..., 2] > 0).any() and np.isfinite(seq.keypoints).all()


def _random_keypoints(rng, frames=6):
    kp = np.concatenate([rng.uniform(0, 600, (frames, 133, 2)), rng.uniform(0.1, 1.0, (frames, 133, 1))], -1)
    return kp.astype(np.float32)


def test_mmpose_json_picks_the_main_signer_and_handles_empty_frames(tmp_path):
    rng = np.random.default_rng(0)
    signer, bystander = _random_keypoints(rng, 3), _random_keypoints(rng, 3)
    frames = []
    for t in range(3):
        instances = [
            {"keypoints": bystander[t, :, :2].tolist(), "keypoint_scores": bystander[t, :, 2].tolist(),
             "bbox": [[500, 10, 560, 120]], "bbox_score": 0.95},
            {"keypoints": signer[t, :, :2].tolist(), "keypoint_scores": (signer[t, :, 2] * 1.06).tolist(),
             "bbox": [[100, 20, 400, 470]], "bbox_score": 0.9},
        ]
        frames.append({"frame_id": t, "instances": instances if t != 1 else []})
    path = tmp_path / "clip.predictions.json"
    path.write_text(json.dumps(frames))
    seq = read_pose(path, fps=25, width=640, height=480)
    assert seq.keypoints.shape == (3, 133, 3)
    np.testing.assert_allclose(seq.keypoints[0, :, :2], signer[0, :, :2], rtol=1e-6)
    assert (seq.keypoints[1] == 0).all()  # no detection in that frame
    assert seq.keypoints[..., 2].max() <= 1.0
    with pytest.raises(PoseFormatError, match="width"):
        read_pose(path, fps=25)


def test_pose_file_written_with_pose_format_reads_back(tmp_path):
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    components = [
        PoseHeaderComponent(name, [f"{name}_{i}" for i in range(n)], [], [], "XYC")
        for name, n in (("BODY", 23), ("FACE", 68), ("LEFT_HAND", 21), ("RIGHT_HAND", 21))
    ]
    header = PoseHeader(0.2, PoseHeaderDimensions(640, 480, 1), components)
    kp = _random_keypoints(np.random.default_rng(1), 4)
    kp[2, 91:112, 2] = 0  # a missed left hand
    body = NumPyPoseBody(25.0, kp[:, None, :, :2], kp[:, None, :, 2])
    path = tmp_path / "clip.pose"
    with open(path, "wb") as f:
        Pose(header, body).write(f)
    seq = read_pose(path)
    assert (seq.width, seq.height, seq.fps) == (640, 480, 25.0)
    assert (seq.keypoints[2, 91:112] == 0).all()
    np.testing.assert_allclose(seq.keypoints[0], kp[0], rtol=1e-6)


def test_numpy_arrays_with_and_without_confidence(tmp_path):
    kp = _random_keypoints(np.random.default_rng(2))
    xy = kp[..., :2].copy()
    xy[0, 5] = np.nan
    np.save(tmp_path / "xy.npy", xy)
    seq = read_pose(tmp_path / "xy.npy", fps=25, width=640, height=480)
    assert seq.keypoints[0, 5].tolist() == [0, 0, 0] and (seq.keypoints[1, :, 2] == 1).all()
    np.savez(tmp_path / "kp.npz", keypoints=kp, fps=30.0, width=1920, height=1080)
    seq = read_pose(tmp_path / "kp.npz")
    assert (seq.fps, seq.width, seq.height) == (30.0, 1920, 1080)
    # What the file records wins over what the caller passes (those serve files that record nothing).
    seq = read_pose(tmp_path / "kp.npz", fps=25.0, width=640, height=480)
    assert (seq.fps, seq.width, seq.height, seq.recorded) == (30.0, 1920, 1080, {"fps", "width", "height"})
    np.savez(tmp_path / "fps_only.npz", keypoints=kp, fps=50.0)
    seq = read_pose(tmp_path / "fps_only.npz", fps=25.0, width=640, height=480)
    assert (seq.fps, seq.width, seq.height, seq.recorded) == (50.0, 640, 480, {"fps"})
    np.save(tmp_path / "bad.npy", np.zeros((4, 137, 3)))
    with pytest.raises(PoseFormatError, match="bad.npy"):
        read_pose(tmp_path / "bad.npy", fps=25, width=1, height=1)


def test_pickles_need_an_explicit_opt_in(tmp_path):
    kp = _random_keypoints(np.random.default_rng(3))
    path = tmp_path / "keypoints.pkl"
    path.write_bytes(pickle.dumps({"clip_a": kp}))
    with pytest.raises(PoseFormatError, match="allow_pickle"):
        read_pickle_collection(path, allow_pickle=False)
    with pytest.raises(PoseFormatError, match="allow_pickle"):
        read_pose(path, key="clip_a", fps=25, width=640, height=480)
    seq = read_pose(path, key="clip_a", fps=25, width=640, height=480, allow_pickle=True)
    np.testing.assert_allclose(seq.keypoints, kp)


def test_shard_pose_is_normalised_by_frame_size_with_missing_points_zero():
    kp = np.zeros((1, 133, 3), dtype=np.float32)
    kp[0, 0] = [960, 540, 0.9]  # nose, kept
    kp[0, 91] = [100, 200, 0.0]  # missed left-hand root
    out = to_shard_pose(PoseSequence(kp, 25.0, 1920, 1080))
    assert out[0, 0].tolist() == pytest.approx([0.5, 0.5, 0.9], abs=1e-3)
    assert out[0, 37].tolist() == [0, 0, 0]
