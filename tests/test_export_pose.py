"""``slp-curate export-pose`` and :mod:`slp.pose.export`: a 79-point sequence as a pose-format ``.pose`` with named
points, parts and limbs, in pixels, that reads back to the exact shard array."""

from __future__ import annotations

import numpy as np
import pytest
from pose_format import Pose

from data_curation.cli import main as curate
from slp.data.schema import Sample, SampleMeta
from slp.data.shards import write_shard
from slp.pose.export import POINT_NAMES, pose_79_bytes, read_pose_79, write_pose_79
from slp.pose.layout import EDGES, NUM_POINTS, PART_NAMES, PART_SLICES, WHOLEBODY_INDICES
from slp.pose.readers import read_pose, to_shard_pose


def _random_shard_pose(rng, frames: int = 40, missing: float = 0.2) -> np.ndarray:
    pose = rng.uniform(-0.5, 1.5, (frames, NUM_POINTS, 3)).astype(np.float16)
    pose[..., 2] = rng.uniform(0.01, 1, (frames, NUM_POINTS)).astype(np.float16)
    pose[rng.random((frames, NUM_POINTS)) < missing] = 0  # missing: confidence 0, coordinates 0
    return pose


@pytest.mark.parametrize("size", [(1280, 720), (210, 260), (1920, 1080), (7680, 4320), (65535, 1), (333, 777)])
def test_round_trip_is_exact_on_random_poses(tmp_path, size):
    pose = _random_shard_pose(np.random.default_rng(sum(size)))
    read = read_pose_79(write_pose_79(tmp_path / "x.pose", pose, 25.0, *size))
    assert read.pose.dtype == np.float16 and np.array_equal(read.pose, pose)
    assert (read.fps, read.width, read.height) == (25.0, *size)


@pytest.mark.parametrize("width", [1, 7, 1280, 8191, 8192, 12345, 65535])
def test_round_trip_is_exact_on_every_float16_coordinate(tmp_path, width):
    bits = np.arange(2**16, dtype=np.uint16).view(np.float16)
    values = bits[np.isfinite(bits) & (np.abs(bits) <= 4)]
    values = values[: len(values) // NUM_POINTS * NUM_POINTS].reshape(-1, NUM_POINTS)
    pose = np.stack([values, values[::-1], np.ones_like(values)], axis=-1)
    read = read_pose_79(write_pose_79(tmp_path / "x.pose", pose, 30.0, width, 720))
    assert np.array_equal(read.pose, pose)


@pytest.mark.parametrize("name", ["FOOTBALL.mmpose_wholebody133.pose", "FOOTBALL.mediapipe_holistic.pose",
                                  "SOUP.openpifpaf_wholebody133.pose"])
def test_round_trip_is_exact_on_real_poses(tmp_path, realdata, name):
    seq = read_pose(realdata / "poses" / name)
    pose = to_shard_pose(seq)
    read = read_pose_79(write_pose_79(tmp_path / "real.pose", pose, seq.fps, seq.width, seq.height))
    assert np.array_equal(read.pose, pose)
    assert (read.fps, read.width, read.height) == (seq.fps, seq.width, seq.height)


def test_file_names_points_groups_parts_and_masks_missing_points(tmp_path):
    pose = _random_shard_pose(np.random.default_rng(0))
    path = write_pose_79(tmp_path / "x.pose", pose, 29.97, 1280, 720)
    read = Pose.read(path.read_bytes())
    assert [c.name for c in read.header.components] == ["BODY", "FACE", "MOUTH", "LEFT_HAND", "RIGHT_HAND"]
    assert [p for c in read.header.components for p in c.points] == list(POINT_NAMES)
    assert len(set(POINT_NAMES)) == NUM_POINTS
    assert POINT_NAMES[WHOLEBODY_INDICES.tolist().index(53)] == "face-30"  # the nose tip
    limbs = 0
    for part, component in zip(PART_NAMES, read.header.components, strict=True):
        start = PART_SLICES[part].start
        limbs += len(component.limbs)
        assert all((a + start, b + start) in {tuple(e) for e in EDGES.tolist()} for a, b in component.limbs)
    assert limbs == len(EDGES) - 4  # all but the four links between parts
    assert read.header.dimensions.width == 1280 and read.header.dimensions.height == 720
    assert read.body.fps == pytest.approx(29.97)
    data = read.body.data[:, 0]
    missing = pose[..., 2] == 0
    assert np.array_equal(np.ma.getmaskarray(data).all(-1), missing)
    seen = ~missing
    np.testing.assert_allclose(data[..., 0].data[seen], pose[..., 0].astype(np.float64)[seen] * 1280, rtol=1e-6)
    np.testing.assert_allclose(data[..., 1].data[seen], pose[..., 1].astype(np.float64)[seen] * 720, rtol=1e-6)


def test_a_prediction_without_confidence_has_every_point_seen(tmp_path):
    prediction = np.random.default_rng(1).uniform(0, 1, (8, NUM_POINTS, 2)).astype(np.float32)
    read = read_pose_79(write_pose_79(tmp_path / "p.pose", prediction, 25.0, 640, 480))
    assert (read.pose[..., 2] == 1).all()
    np.testing.assert_allclose(read.pose[..., :2], prediction, atol=1e-3)


@pytest.mark.parametrize("pose, size, message", [
    (np.zeros((4, 133, 3)), (640, 480), "not"),
    (np.full((4, NUM_POINTS, 3), np.nan), (640, 480), "finite"),
    (np.zeros((4, NUM_POINTS, 3)), (0, 480), "width"),
    (np.zeros((4, NUM_POINTS, 3)), (640, 70000), "height"),
])
def test_bad_inputs_are_refused(pose, size, message):
    with pytest.raises(ValueError, match=message):
        pose_79_bytes(pose, 25.0, *size)


def test_reading_another_layout_is_refused(realdata):
    with pytest.raises(ValueError, match="79-point layout"):
        read_pose_79(realdata / "poses" / "SOUP.mmpose_wholebody133.pose")


def _shard(tmp_path, rng) -> tuple:
    samples = []
    for i, (width, height) in enumerate([(1920, 1080), (210, 260)]):
        meta = SampleMeta(dataset="phoenix14t", split="dev", sign_language="GSL", text_language="de",
                          source_id=f"clip{i}", fps=25.0, width=width, height=height, text="heute", paired=True)
        pose = _random_shard_pose(rng, frames=20 + i)
        pose[..., :2] = np.clip(pose[..., :2], 0, 1)
        samples.append(Sample(f"phoenix14t_dev_clip{i}", pose, meta))
    return write_shard(tmp_path / "shard-000000.tar", samples).path, samples


def test_export_pose_command_writes_a_sample_that_reads_back_exactly(tmp_path, capsys):
    shard, samples = _shard(tmp_path, np.random.default_rng(2))
    curate(["export-pose", str(shard), "--key", samples[1].key, "--out", str(tmp_path / "out" / "clip1.pose")])
    read = read_pose_79(tmp_path / "out" / "clip1.pose")
    assert np.array_equal(read.pose, samples[1].pose)
    assert (read.fps, read.width, read.height) == (25.0, 210, 260)
    assert "clip1.pose" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing shard", "unknown key", "out is a folder"])
def test_export_pose_user_errors_are_one_line(tmp_path, capsys, case):
    shard, samples = _shard(tmp_path, np.random.default_rng(3))
    shard, key, out = str(shard), samples[0].key, str(tmp_path / "x.pose")
    if case == "missing shard":
        shard = str(tmp_path / "nope.tar")
    elif case == "unknown key":
        key = "phoenix14t_dev_nope"
    else:
        out = str(tmp_path)
    with pytest.raises(SystemExit) as exc:
        curate(["export-pose", shard, "--key", key, "--out", out])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("slp-curate: error: ") and err.count("\n") == 1
    assert {"missing shard": "no such file", "unknown key": "phoenix14t_dev_nope",
            "out is a folder": "is a directory"}[case] in err
