"""The ASL Signs adapter (Kaggle ISLR release: train.csv + one MediaPipe landmark Parquet per clip): the fixture in
the release's layout built end to end, the split and frame-size options, the 30 real clips of
``../shared/realdata/asl_signs`` (hands on the person's wrists, rendered), and every bad row or landmark file
turned into a one-line reject while the build goes on."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_curation.adapters import get_adapter
from data_curation.adapters.asl_signs import DEFAULT_FRAME_SIZE, ASLSignsAdapter
from data_curation.cli import main as curate
from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.fixtures import asl_signs as fixture
from data_curation.fixtures import write_fixture_datasets
from data_curation.fixtures.poses import fixture_keypoints
from data_curation.pipeline import build
from slp.cli_errors import UserError
from slp.config import load_config
from slp.data.shards import iter_samples
from slp.pose.layout import COCO_WHOLEBODY_POINT_NAMES, LEFT_HAND, RIGHT_HAND, WHOLEBODY_INDICES
from slp.pose.readers import PoseFormatError, PoseSequence, read_pose, to_shard_pose
from tests.test_islr_adapters import dataset_config, items

WIDTH, HEIGHT = DEFAULT_FRAME_SIZE
_KEPT = list(WHOLEBODY_INDICES)
#: Positions in the 79 array of the body points the geometry checks use.
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_WRIST, RIGHT_WRIST = (
    _KEPT.index(COCO_WHOLEBODY_POINT_NAMES.index(name))
    for name in ("left_shoulder", "right_shoulder", "left_wrist", "right_wrist"))


def _samples(output: Path) -> dict:
    return {s.key: s for s in iter_samples(sorted((output / "shards").glob("*.tar")))}


def _rejects(output: Path) -> dict[str, dict]:
    return {row["source_id"]: row for row in pq.read_table(output / "rejects.parquet").to_pylist()}


def fresh_fixture(tmp_path: Path) -> dict:
    """The fixture written under ``tmp_path/asl_signs``, for a test to change; its curate-config entry."""
    return fixture.write(tmp_path / "asl_signs")


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory):
    """The fixture written by the fixtures command's writer and built alone: (root, config, summary, samples)."""
    root = tmp_path_factory.mktemp("asl_signs")
    cfg = load_config(CurateConfig, write_fixture_datasets(root, ("asl_signs",)))
    summary = build(cfg)
    return root, cfg, summary, _samples(root / "build")


# ---------------------------------------------------------------------------------------------------- fixture


def test_registry_gives_the_asl_signs_adapter():
    assert get_adapter("asl_signs") is ASLSignsAdapter
    assert (ASLSignsAdapter.sign_language, ASLSignsAdapter.text_language) == ("ASL", "en")


def test_fixture_builds_with_participants_held_out_and_its_short_clip_rejected(fixture_build):
    root, _, summary, samples = fixture_build
    assert summary["reconciled"]
    written = {split: c["written"] for split, c in summary["by_dataset"]["asl_signs"].items()}
    assert written == {"train": 5, "dev": 2, "test": 2}
    assert _rejects(root / "build") == {str(fixture.SHORT_CLIP): {
        "dataset": "asl_signs", "split": "train", "source_id": str(fixture.SHORT_CLIP),
        "key": f"asl_signs_train_{fixture.SHORT_CLIP}", "reason": "too_few_frames",
        "detail": "3 frames < min_frames=4", "pose_path": f"train_landmark_files/25571/{fixture.SHORT_CLIP}.parquet"}}
    splits = {s.meta.signer: s.meta.split for s in samples.values()}
    assert splits == {"4718": "train", "25571": "train", str(fixture.DEV_PARTICIPANT): "dev",
                      str(fixture.TEST_PARTICIPANT): "test"}
    tv = samples["asl_signs_dev_2004188231"].meta
    assert (tv.source_id, tv.signer, tv.gloss, tv.label, tv.text, tv.paired) == (
        "2004188231", "30680", "TV", 0, "This word is TV.", True)
    assert (tv.sign_language, tv.text_language, tv.width, tv.height) == ("ASL", "en", WIDTH, HEIGHT)
    assert (tv.pose_layout, tv.pose_estimator) == ("mediapipe_holistic_543", "mediapipe holistic")
    assert {s.meta.label for s in samples.values()} == {0, 1, 2, 3}


def test_fixture_points_come_back_where_the_mapping_put_them_and_a_frame_gap_keeps_its_time(fixture_build):
    _, _, _, samples = fixture_build
    (participant, (sequence, _, _, frames)), = [(p, clip) for p, clips in fixture.CLIPS.items() for clip in clips
                                                if clip[0] == fixture.GAP_CLIP]
    sample = samples[f"asl_signs_train_{sequence}"]
    gap = len(fixture.GAP_FRAMES)
    assert len(sample.pose) == frames + gap == sample.meta.frame_end
    # The clip starts at frame 30: numbers 35-37 are missing from the file, so positions 5-7 hold no detection.
    assert (sample.pose[5:5 + gap, :, 2] == 0).all()
    assert (sample.pose[: 5, :, 2] > 0).any(axis=1).all() and (sample.pose[5 + gap:, :, 2] > 0).any(axis=1).all()
    # The procedural signer's points, with a hand missing whole where any of its points is (MediaPipe's rule).
    expected = fixture_keypoints(frames, fixture.SEED + sequence % 1000, WIDTH, HEIGHT)
    for hand in (slice(91, 112), slice(112, 133)):
        expected[(expected[:, hand, 2] == 0).any(axis=1), hand] = 0
    expected = np.concatenate([expected[:5], np.zeros((gap, 133, 3), np.float32), expected[5:]])
    expected = to_shard_pose(PoseSequence(expected, 25.0, WIDTH, HEIGHT)).astype(np.float32)
    pose = sample.pose.astype(np.float32)
    np.testing.assert_array_equal(pose[..., 2] > 0, expected[..., 2] > 0)
    np.testing.assert_allclose(pose[..., :2], expected[..., :2], atol=1e-3)
    assert (pose[..., 2][pose[..., 2] > 0] == 1).all()  # the release has no confidences: a point is seen or not


# ---------------------------------------------------------------------------------------------------- options


def test_split_and_frame_size_options(fixture_build):
    root, cfg, _, _ = fixture_build
    entry = dataclasses.asdict(cfg.datasets["asl_signs"])
    records, rejects = items(ASLSignsAdapter(dataset_config(entry, options={"dev_participants": [],
                                                                            "test_participants": []})))
    assert {r.split for r in records} == {"train"} and len(records) == 10 and not rejects
    sized = entry | {"poses": entry["poses"] | {"width": 1080, "height": 1920}}
    assert {(r.width, r.height) for r in items(ASLSignsAdapter(dataset_config(sized)))[0]} == {(1080, 1920)}
    problems = [
        ({"options": {"dev_participants": [4718], "test_participants": ["4718"]}}, r"\['4718'\] in both"),
        ({"options": {"test_participants": 4718}}, "not a list of participant ids"),
        ({"poses": entry["poses"] | {"format": "npy"}}, "poses.format 'npy'"),
        ({"poses": entry["poses"] | {"width": 1080}}, "give both or neither"),
        ({"options": {"sign_map": "signs.json"}}, "signs.json: no such file"),
    ]
    for change, message in problems:
        with pytest.raises(UserError, match=message):
            ASLSignsAdapter(dataset_config({**entry, **change}))
    typo = ASLSignsAdapter(dataset_config(entry, options={"test_participants": [62950]}))
    with pytest.raises(UserError, match=r"participant\(s\) \['62950'\] that .*train.csv does not have"):
        list(typo.records())


def test_without_the_sign_map_labels_are_unknown_and_with_it_an_unlisted_sign_is_rejected(tmp_path):
    config = fresh_fixture(tmp_path)
    root = Path(config["annotation_root"])
    (root / "sign_to_prediction_index_map.json").unlink()
    records, rejects = items(ASLSignsAdapter(dataset_config(config)))
    assert {r.label for r in records} == {-1} and not rejects
    (root / "signs.json").write_text(json.dumps({"hello": 7}), encoding="utf-8")
    records, rejects = items(ASLSignsAdapter(dataset_config(config, options={"sign_map": "signs.json"})))
    assert {r.label for r in records} == {7}
    assert {r.reason for r in rejects} == {"unknown_label"} and len(records) + len(rejects) == 10
    (root / "signs.json").write_text(json.dumps(["hello"]), encoding="utf-8")
    with pytest.raises(UserError, match="not a JSON object of sign"):
        ASLSignsAdapter(dataset_config(config, options={"sign_map": "signs.json"}))


def test_sl15m_lists_asl_signs_switched_off(tmp_path):
    cfg = load_config(CurateConfig, "configs/curate/sl15m.yaml")
    entry = cfg.datasets["asl_signs"]
    assert (entry.adapter, entry.enabled, entry.poses.format) == ("asl_signs", False, "asl_signs_parquet")
    assert all(d.enabled for name, d in cfg.datasets.items() if name != "asl_signs")
    assert load_config(CurateConfig, "configs/curate/sl15m.yaml", ["datasets.asl_signs.enabled=true"]) \
        .datasets["asl_signs"].enabled
    # A switched-off entry is not checked (its roots need not exist) nor read.
    off = CurateConfig(output=str(tmp_path / "out"), datasets={"asl_signs": entry})
    assert build(off)["totals"]["records_in"] == 0


# --------------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_build(realdata, tmp_path_factory):
    root = realdata / "asl_signs"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    poses = PoseSourceConfig(root=str(root), format="asl_signs_parquet")
    out = tmp_path_factory.mktemp("asl_real") / "build"
    cfg = CurateConfig(output=str(out), datasets={"asl_signs": DatasetConfig(
        adapter="asl_signs", annotation_root=str(root), poses=poses)})
    return root, out, build(cfg)


def test_the_30_real_clips_reconcile(real_build):
    root, out, summary = real_build
    with open(root / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    assert summary["reconciled"] and summary["totals"]["records_in"] == 30
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(manifest) + pq.read_table(out / "rejects.parquet").num_rows == 30
    assert summary["totals"]["written"] == len(manifest) == 30  # every real clip is readable
    assert {r["source_id"] for r in manifest} == {r["sequence_id"] for r in rows}
    assert {r["signer"] for r in manifest} == {r["participant_id"] for r in rows} and len(
        {r["signer"] for r in manifest}) == 3
    assert {r["text"] for r in manifest} == {"This word is hello.", "This word is thankyou."}
    assert {r["split"] for r in manifest} == {"train"} and {r["label"] for r in manifest} == {-1}  # no sign map
    samples = _samples(out)
    by_id = {s.meta.source_id: s.meta for s in samples.values()}
    assert all(by_id[r["sequence_id"]].gloss == r["sign"] and by_id[r["sequence_id"]].signer == r["participant_id"]
               for r in rows)
    # A clip is as long as its frame numbers span (the real files skip none).
    for row in rows[:5]:
        frames = pq.read_table(root / row["path"], columns=["frame"])["frame"]
        span = pc.max(frames).as_py() - pc.min(frames).as_py() + 1
        assert len(samples[f"asl_signs_train_{row['sequence_id']}"].pose) == span


def test_real_hands_lie_on_their_own_wrists_inside_the_frame(real_build):
    _, out, _ = real_build
    hands_seen = {"left": 0, "right": 0}
    for sample in _samples(out).values():
        pose = sample.pose.astype(np.float32)
        pixels = pose[..., :2] * np.array([sample.meta.width, sample.meta.height], dtype=np.float32)
        shoulders = np.linalg.norm(pixels[:, LEFT_SHOULDER] - pixels[:, RIGHT_SHOULDER], axis=-1)
        for side, hand, same, other in (("left", LEFT_HAND, LEFT_WRIST, RIGHT_WRIST),
                                        ("right", RIGHT_HAND, RIGHT_WRIST, LEFT_WRIST)):
            seen = (pose[:, hand.start, 2] > 0) & (pose[:, same, 2] > 0) & (pose[:, other, 2] > 0)
            if not seen.any():
                continue
            hands_seen[side] += int(seen.sum())
            root = pixels[seen, hand.start]
            near = np.linalg.norm(root - pixels[seen, same], axis=-1) / shoulders[seen]
            far = np.linalg.norm(root - pixels[seen, other], axis=-1) / shoulders[seen]
            assert np.median(near) < 0.5, (sample.key, side)  # the hand's wrist is the body's wrist of its side
            assert (near < far).all(), (sample.key, side)
            points = pose[seen][:, hand][pose[seen][:, hand, 2] > 0][:, :2]
            assert ((points > -0.2) & (points < 1.2)).all(), sample.key  # in the frame, give or take a fingertip
            assert ((points >= 0) & (points <= 1)).all(axis=1).mean() > 0.9, sample.key
    assert hands_seen["left"] > 50 and hands_seen["right"] > 50  # both sides were checked (a left-handed signer)


def test_a_real_sample_renders(real_build, tmp_path, capsys):
    _, out, _ = real_build
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    row = next(r for r in manifest if r["source_id"] == "1933462397")  # 36 frames, the left hand in 35
    curate(["render", str(out / "shards" / row["shard"]), "--key", row["key"], "--out", str(tmp_path / "clip")])
    assert f"{row['key']}: 36 frames" in capsys.readouterr().out
    with Image.open(tmp_path / "clip_sheet.png") as sheet:
        image = np.asarray(sheet.convert("RGB"))
    assert image.std() > 0  # something was drawn
    with Image.open(tmp_path / "clip.gif") as gif:
        assert (gif.n_frames, gif.size) == (36, (WIDTH, HEIGHT))


def test_a_real_landmark_file_reads_with_auto_format_given_a_frame_size(realdata):
    path = realdata / "asl_signs" / "train_landmark_files" / "2044" / "185948800.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with pytest.raises(PoseFormatError, match="ASL Signs landmark files do not record the width"):
        read_pose(path, fps=30.0)
    seq = read_pose(path, fps=30.0, width=WIDTH, height=HEIGHT)
    table = pq.read_table(path)
    assert (seq.num_frames, seq.layout) == (7, "mediapipe_holistic_543")
    # The pose's nose (MediaPipe pose landmark 0) at its first frame, in pixels.
    nose = table.filter(pc.and_(pc.equal(table["frame"], 19), pc.and_(pc.equal(table["type"], "pose"),
                                                                     pc.equal(table["landmark_index"], 0))))
    np.testing.assert_allclose(seq.keypoints[0, 0], [nose["x"][0].as_py() * WIDTH, nose["y"][0].as_py() * HEIGHT, 1],
                               rtol=1e-5)
    assert (seq.keypoints[:, 91:112] == 0).all()  # this clip's left hand is NaN throughout: missing, not NaN


# ------------------------------------------------------------------------------------------------- bad input


def _write_landmarks(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_bad_rows_and_landmark_files_are_one_line_rejects_and_the_build_goes_on(tmp_path):
    config = fresh_fixture(tmp_path)
    root = Path(config["annotation_root"])
    good_path = root / fixture.clip_path(4718, 1002741633)
    good = pq.read_table(good_path)
    planted = tmp_path / "asl_signs" / "train_landmark_files" / "99"
    whole = good_path.read_bytes()
    planted.mkdir(parents=True)
    (planted / "1.parquet").write_bytes(whole[: len(whole) // 2])
    nan = pa.array([float("nan")] * good.num_rows, pa.float64())
    _write_landmarks(planted / "2.parquet", good.set_column(4, "x", nan).set_column(5, "y", nan))
    _write_landmarks(planted / "3.parquet", good.drop_columns(["type"]))
    types = good["type"].to_pylist()
    _write_landmarks(planted / "4.parquet", good.set_column(2, "type", pa.array(
        ["left_foot" if t == "right_hand" else t for t in types], pa.string())))
    indices = good["landmark_index"].to_numpy().copy()
    indices[0] = 468  # a face mesh of 468 vertices has no vertex 468
    _write_landmarks(planted / "5.parquet", good.set_column(3, "landmark_index", pa.array(indices, pa.int16())))
    _write_landmarks(planted / "6.parquet", pa.concat_tables([good, good.slice(0, 1)]))
    frames = good["frame"].to_numpy().copy()
    frames[-543:] = 30000  # the last frame 30000 numbers past the others: a corrupt file, not a gap to keep
    _write_landmarks(planted / "7.parquet", good.set_column(0, "frame", pa.array(frames, pa.int16())))
    _write_landmarks(planted / "8.parquet", good.set_column(4, "x", pa.array([str(v) for v in good["x"].to_pylist()])))
    (planted / "9.parquet").mkdir()
    with open(root / "train.csv", "a", encoding="utf-8", newline="") as f:
        f.write("".join(f"train_landmark_files/99/{n}.parquet,99,{n},hello\n" for n in range(1, 10)))
        f.write("train_landmark_files/99/10.parquet,99,10,hello\n"  # no such file
                "train_landmark_files/99/11.parquet,P99,11,hello\n"  # participant not a number
                "train_landmark_files/99/12.parquet,99,12\n"  # a field short
                f"{fixture.clip_path(4718, 1002741633)},4718,1002741633,hello\n"  # the first row again
                f"{fixture.clip_path(4718, 1002741633)},4718,13,\n"  # no sign
                f"{fixture.clip_path(4718, 1002741633)},4718,14,goodbye\n"  # not in the sign map
                "\"train_landmark_files/99/15.parquet,99,15,hello\n")  # a quote never closed
    cfg = CurateConfig(output=str(tmp_path / "out"), datasets={"asl_signs": dataset_config(config)})
    summary = build(cfg)
    assert summary["reconciled"]
    rejects = _rejects(tmp_path / "out")
    expected = {"1": "unreadable_pose", "2": "no_detections", "3": "unsupported_layout", "4": "unsupported_layout",
                "5": "unsupported_layout", "6": "unreadable_pose", "7": "unreadable_pose", "8": "unsupported_dtype",
                "9": "missing_pose_file", "10": "missing_pose_file", "11": "malformed_row", "12": "malformed_row",
                "1002741633": "duplicate_id", "13": "empty_gloss", "14": "unknown_label",
                "15": "malformed_row", str(fixture.SHORT_CLIP): "too_few_frames"}
    assert {source: row["reason"] for source, row in rejects.items()} == expected
    for source, row in rejects.items():
        assert "\n" not in row["detail"] and "Traceback" not in row["detail"], source
    details = {source: row["detail"] for source, row in rejects.items()}
    assert details["1"].startswith(f"{planted / '1.parquet'}: not a readable Parquet file (ArrowInvalid: ")
    assert details["3"].startswith(f"{planted / '3.parquet'}: columns ['frame', 'row_id', 'landmark_index', 'x', 'y', "
                                   f"'z'] lack ['type']")
    assert "landmark type(s) ['left_foot']" in details["4"]
    assert "face landmark_index 468 outside its part's 0-467" in details["5"]
    assert details["6"].endswith("face landmark_index 0 has more than one row")
    assert "frame 30000 (the clip starts at frame 12) with only 9 frames listed (a corrupt file)" in details["7"]
    assert "column x holds string" in details["8"]
    assert details["9"] == f"{planted / '9.parquet'}: is a directory, not a file"
    assert details["10"] == f"{planted / '10.parquet'}: no such file"
    assert details["1002741633"].endswith("sequence_id 1002741633 already at " f"{root / 'train.csv'}:2")
    assert details["15"].startswith(f"{root / 'train.csv'}:27: unclosed quote")
    # The clean clips are all still written.
    assert summary["totals"]["written"] == 9 and all(
        key in _samples(tmp_path / "out") for key in ("asl_signs_train_1002741633", "asl_signs_test_2210634475"))
