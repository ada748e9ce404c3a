"""The four ISLR adapters (WLASL, MS-ASL, NMFs-CSL, SLR500): fixtures in the releases' layouts built end to
end, every annotation quirk turned into a record or a reject with its reason, and the real WLASL / MS-ASL
annotation files of ``../shared/realdata`` read whole (skipped when that folder is absent)."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_curation.adapters import get_adapter
from data_curation.adapters.isolated import PoseNameTemplate, read_split_list, read_vocabulary
from data_curation.adapters.msasl import MSASLAdapter
from data_curation.adapters.nmfs_csl import NMFsCSLAdapter
from data_curation.adapters.slr500 import SLR500Adapter
from data_curation.adapters.wlasl import WLASLAdapter, youtube_id
from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.fixtures import msasl as msasl_fixture
from data_curation.fixtures import nmfs_csl as nmfs_fixture
from data_curation.fixtures import slr500 as slr500_fixture
from data_curation.fixtures import wlasl as wlasl_fixture
from data_curation.fixtures import write_fixture_datasets
from data_curation.fixtures.poses import fixture_keypoints, write_pickle_collection, write_pose
from data_curation.pipeline import build
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import from_dict, load_config
from slp.data.shards import iter_samples
from slp.pose.readers import PoseSequence, to_shard_pose

ISLR = ("wlasl", "msasl", "nmfs_csl", "slr500")


def dataset_config(entry: dict, **changes) -> DatasetConfig:
    """A fixture's curate-config entry as a DatasetConfig, with top-level fields / options changed."""
    entry = json.loads(json.dumps(entry))
    entry.setdefault("options", {}).update(changes.pop("options", {}))
    entry.update(changes)
    return from_dict(DatasetConfig, entry)


def items(adapter) -> tuple[list[CurationRecord], list[AnnotationReject]]:
    out = list(adapter.records())
    return ([r for r in out if isinstance(r, CurationRecord)], [r for r in out if isinstance(r, AnnotationReject)])


@pytest.fixture(scope="module")
def islr_build(tmp_path_factory):
    """The four fixtures built together: (root, summary, manifest rows by key, samples by key, rejects)."""
    root = tmp_path_factory.mktemp("islr")
    cfg = load_config(CurateConfig, write_fixture_datasets(root, ISLR))
    summary = build(cfg)
    manifest = {row["key"]: row for row in pq.read_table(root / "build" / "manifest.parquet").to_pylist()}
    samples = {s.key: s for s in iter_samples(sorted((root / "build" / "shards").glob("*.tar")))}
    rejects = pq.read_table(root / "build" / "rejects.parquet").to_pylist()
    return root, summary, manifest, samples, rejects


# ------------------------------------------------------------------------------------------------ end to end


def test_registry_gives_the_isolated_adapters():
    assert [get_adapter(name) for name in ISLR] == [WLASLAdapter, MSASLAdapter, NMFsCSLAdapter, SLR500Adapter]
    assert [(a.sign_language, a.text_language) for a in (WLASLAdapter, MSASLAdapter, NMFsCSLAdapter, SLR500Adapter)] \
        == [("ASL", "en"), ("ASL", "en"), ("CSL", "zh"), ("CSL", "zh")]


def test_fixtures_build_into_shards_with_every_reject_explained(islr_build):
    _, summary, manifest, samples, rejects = islr_build
    assert summary["reconciled"]
    assert {(r["dataset"], r["source_id"]): r["reason"] for r in rejects} == {
        ("wlasl", wlasl_fixture.MISSING_VIDEOS[0]): "missing_pose_file",  # not downloaded
        ("msasl", "train_00003"): "missing_pose_file",  # the YouTube video is gone
        ("msasl", "val_00002"): "frame_range_outside",  # the clip runs past the downloaded video
        ("nmfs_csl", nmfs_fixture.NO_KEYPOINTS): "missing_pose_file",  # no sequence of that name in the collection
        ("slr500", slr500_fixture.SHORT_CLIP): "too_few_frames",
        ("slr500", slr500_fixture.BROKEN_CLIP): "unsupported_layout",  # 17 body points
    }
    written = {d: {s: c["written"] for s, c in splits.items()} for d, splits in summary["by_dataset"].items()}
    assert written == {"wlasl": {"train": 6, "dev": 3, "test": 2}, "msasl": {"train": 3, "dev": 2, "test": 2},
                       "nmfs_csl": {"train": 11, "test": 8}, "slr500": {"train": 7, "test": 6}}
    # NMFs-CSL ships label indices only: its samples are unpaired; the other three are all pairs.
    assert summary["by_dataset"]["nmfs_csl"]["train"]["unpaired"] == 11
    assert summary["totals"]["paired"] == summary["totals"]["written"] - 19
    assert set(manifest) == set(samples)
    assert {row["sign_language"] for row in manifest.values() if row["dataset"] in ("wlasl", "msasl")} == {"ASL"}
    assert {row["sign_language"] for row in manifest.values() if row["dataset"] in ("nmfs_csl", "slr500")} == {"CSL"}


def test_wlasl_samples_keep_ids_glosses_and_frame_sizes(islr_build):
    root, _, manifest, samples, _ = islr_build
    meta = samples["wlasl_train_05237"].meta  # leading zero kept in the id, the key and the pose file name
    assert (meta.source_id, meta.gloss, meta.label, meta.signer) == ("05237", "thank you", 1, "109")
    assert (meta.text, meta.text_language, meta.paired) == ("This word is thank you.", "en", True)
    assert manifest["wlasl_train_17012"]["text"] == "This word is don't want."
    # Trimmed clips are used whole, whatever frame range the instance names in its source video.
    cut = samples["wlasl_dev_07069"]
    assert (cut.meta.frame_start, cut.meta.frame_end, cut.meta.width, cut.meta.height) == (0, 50, 1280, 720)
    with np.load(root / "wlasl" / "poses" / "07069.npz") as npz:
        expected = to_shard_pose(PoseSequence(npz["keypoints"], 25.0, 1280, 720))
    np.testing.assert_array_equal(cut.pose, expected)
    assert sorted({m["label"] for m in manifest.values() if m["dataset"] == "wlasl"}) == [0, 1, 2, 3]


def test_msasl_samples_are_cut_by_time_in_each_videos_own_frame_rate(islr_build):
    _, _, manifest, samples, _ = islr_build
    first = samples["msasl_train_train_00000"].meta  # 0.0-1.277 s of a 29.97 fps video
    assert (first.frame_start, first.frame_end, first.fps) == (0, round(1.277 * 29.97), pytest.approx(29.97))
    how_many = samples["msasl_train_train_00002"].meta  # URL with &t=54s, signer -1 beside signer_id 76
    assert (how_many.gloss, how_many.text, how_many.signer) == ("how_many", "This word is how many.", "76")
    assert (how_many.frame_start, how_many.frame_end, how_many.width) == (60, 105, 480)
    dad = samples["msasl_dev_val_00001"].meta  # clean_text "daddy": the gloss is the class name
    assert (dad.gloss, dad.label, dad.frame_start, dad.frame_end) == ("dad", 5, 50, 99)
    assert manifest["msasl_train_train_00001"]["text"] == "This word is nice."  # scheme-less URL, review key


def test_nmfs_csl_samples_are_unpaired_and_keep_their_labels(islr_build):
    root, _, _, samples, _ = islr_build
    name = nmfs_fixture.clip_name(2, 9)
    sample = samples[f"nmfs_csl_test_{name}"]
    assert (sample.meta.paired, sample.meta.text, sample.meta.text_language, sample.meta.label) == (False, "", "", 2)
    assert sample.text is None and (sample.meta.width, sample.meta.height) == (512, 512)
    with open(root / "nmfs_csl" / nmfs_fixture.KEYPOINT_FILE, "rb") as f:
        expected = to_shard_pose(PoseSequence(pickle.load(f)[name], 25.0, 512, 512))
    np.testing.assert_array_equal(sample.pose, expected)
    # dev.pkl (a copy of the test clips, not an official split) is not read by default.
    assert not any(key.startswith("nmfs_csl_dev_") for key in samples)


def test_slr500_samples_are_split_by_signer_with_chinese_sentences(islr_build):
    _, _, manifest, samples, _ = islr_build
    rows = [m for m in manifest.values() if m["dataset"] == "slr500"]
    assert {(m["signer"], m["split"]) for m in rows} == {("P01", "train"), ("P02", "train"), ("P36", "train"),
                                                         ("P37", "test"), ("P50", "test")}
    meta = samples["slr500_test_000001-P50_01_00_1_color"].meta
    assert (meta.source_id, meta.label, meta.gloss) == ("000001/P50_01_00_1_color", 1, "你们")
    assert meta.text == "这个词是你们。"
    assert (meta.text_language, meta.fps, meta.width, meta.height) == ("zh", 30.0, 1280, 720)


@pytest.mark.slow  # two spawned worker processes
def test_islr_fixtures_give_the_same_samples_with_two_workers(tmp_path):
    one = build(load_config(CurateConfig, write_fixture_datasets(tmp_path / "a", ISLR, workers=1, records_per_shard=7)))
    two = build(load_config(CurateConfig, write_fixture_datasets(tmp_path / "b", ISLR, workers=2, records_per_shard=7)))
    assert one["totals"] == two["totals"]
    names = sorted(p.name for p in (tmp_path / "a" / "build" / "shards").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b" / "build" / "shards").iterdir())
    for name in names:  # the fixtures are written under different roots: compare what the shards hold
        a = list(iter_samples([tmp_path / "a" / "build" / "shards" / name]))
        b = list(iter_samples([tmp_path / "b" / "build" / "shards" / name]))
        assert [(s.key, s.meta) for s in a] == [(s.key, s.meta) for s in b]
        assert all(np.array_equal(x.pose, y.pose) for x, y in zip(a, b))


def test_excluded_test_splits_are_counted_not_written(tmp_path):
    path = write_fixture_datasets(tmp_path, ISLR)
    cfg = load_config(CurateConfig, path, [f"datasets.{name}.exclude_splits=[test]" for name in ISLR])
    summary = build(cfg)
    assert summary["reconciled"]
    assert {d: splits["test"]["excluded_split"] for d, splits in summary["by_dataset"].items()} == {
        "wlasl": 3, "msasl": 2, "nmfs_csl": 8, "slr500": 6}
    assert not any(row["split"] == "test" for row in pq.read_table(tmp_path / "build" / "manifest.parquet").to_pylist())


# ---------------------------------------------------------------------------------------------------- WLASL


def _wlasl_json(path: Path, glosses: list) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "WLASL_v0.3.json").write_text(json.dumps(glosses), encoding="utf-8")


def _instance(video_id, split="train", **fields):
    base = {"bbox": [0, 0, 10, 10], "fps": 25, "frame_end": -1, "frame_start": 1, "instance_id": 0, "signer_id": 7,
            "source": "aslbrick", "split": split, "url": "http://x.example/v.mp4", "variation_id": 0,
            "video_id": video_id}
    base.update(fields)
    return base


def _wlasl(tmp_path, glosses, **options) -> WLASLAdapter:
    _wlasl_json(tmp_path / "wlasl", glosses)
    poses = PoseSourceConfig(root=str(tmp_path / "poses"), format="pose")
    return WLASLAdapter(DatasetConfig(adapter="wlasl", annotation_root=str(tmp_path / "wlasl"), poses=poses,
                                      options=options))


def test_wlasl_annotation_problems_are_rejected_one_by_one(tmp_path):
    adapter = _wlasl(tmp_path, [
        {"gloss": "book", "instances": [_instance("00001"), _instance(2), _instance("00003", split="validation2"),
                                        _instance("00001", split="test"), "not an instance"]},
        {"gloss": "  ", "instances": [_instance("00004")]},
        ["not", "a", "gloss"],
        {"gloss": "drink", "instances": [_instance("00005", split="val")]},
    ])
    records, rejects = items(adapter)
    assert [(r.source_id, r.split, r.label, r.pose_path) for r in records] == [
        ("00001", "train", 0, "00001.pose"), ("00005", "dev", 3, "00005.pose")]
    assert [(r.source_id, r.reason) for r in rejects] == [
        ("2", "malformed_annotation"),  # an int video_id has lost any leading zero: refused, not guessed
        ("00003", "unknown_split"), ("00001", "duplicate_id"), ("gloss0#4", "malformed_annotation"),
        ("00004", "empty_gloss"), ("gloss#2", "malformed_annotation")]
    assert all(r.detail for r in rejects)


def test_wlasl_raw_videos_are_cut_by_the_one_based_inclusive_frame_range(tmp_path):
    youtube = "https://www.youtube.com/watch?v=0UsjUE-TXns"
    adapter = _wlasl(tmp_path, [{"gloss": "book", "instances": [
        _instance("07069", frame_start=1265, frame_end=1314, url=youtube, source="youtube"),
        _instance("07070", frame_start=1, frame_end=-1),
        _instance("07071", frame_start=0, frame_end=10),
        _instance("07072", frame_start=50, frame_end=49),
    ]}], clips="raw")
    records, rejects = items(adapter)
    assert [(r.pose_path, r.frame_start, r.frame_end) for r in records] == [
        ("0UsjUE-TXns.pose", 1264, 1314), ("07070.pose", 0, None)]
    assert [(r.source_id, r.reason) for r in rejects] == [("07071", "invalid_frame_range"),
                                                          ("07072", "invalid_frame_range")]


def test_wlasl_raw_frame_range_cuts_the_pose_in_the_pipeline(tmp_path):
    adapter = _wlasl(tmp_path, [{"gloss": "book", "instances": [_instance("07069", frame_start=11, frame_end=30)]}],
                     clips="raw")
    kp = fixture_keypoints(40, seed=1)
    write_pose(tmp_path / "poses" / "07069.pose", kp, "pose")
    summary = build(CurateConfig(output=str(tmp_path / "out"), datasets={"wlasl": adapter.config}, min_frames=4))
    assert summary["totals"]["written"] == 1
    sample = next(iter_samples(sorted((tmp_path / "out" / "shards").glob("*.tar"))))
    assert (sample.meta.frame_start, sample.meta.frame_end) == (10, 30)
    np.testing.assert_array_equal(sample.pose, to_shard_pose(PoseSequence(kp[10:30], 25.0, 640, 480)))


def test_wlasl_whole_file_problems_and_bad_options_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="expected the list"):
        items(_wlasl(tmp_path, {"gloss": "book"}))
    with pytest.raises(UserError, match="unknown: \\['videoid'\\]"):
        _wlasl(tmp_path, [], pose_name="{videoid}")
    with pytest.raises(UserError, match="clips="):
        _wlasl(tmp_path, [], clips="cut")
    adapter = _wlasl(tmp_path, [], annotation_file="WLASL_v0.4.json")
    with pytest.raises(UserError, match="WLASL_v0.4.json"):
        items(adapter)


def test_wlasl_pose_name_template_and_extra_hands(tmp_path):
    glosses = [{"gloss": "book", "instances": [_instance("00001", signer_id=3)]}]
    adapter = _wlasl(tmp_path, glosses, pose_name="{split}/{gloss}/{video_id}")
    assert items(adapter)[0][0].pose_path == "train/book/00001.pose"
    adapter.config.extra_hands = PoseSourceConfig(root=str(tmp_path / "interwild"), format="pose")
    records, _ = items(adapter)
    assert [(r.key, r.source_id, r.extra_hand_path) for r in records] == [
        ("wlasl_train_00001", "00001", None), ("wlasl_train_00001_xh", "00001#xh", "train/book/00001.pose")]


def test_youtube_ids_from_every_url_shape():
    assert youtube_id("https://www.youtube.com/watch?v=ri3NrdgfAtE") == "ri3NrdgfAtE"
    assert youtube_id("www.youtube.com/watch?v=l31UXgChCS4") == "l31UXgChCS4"
    assert youtube_id("https://www.youtube.com/watch?v=PBDUwwE9BFM&t=54s") == "PBDUwwE9BFM"
    assert youtube_id("https://youtu.be/PBDUwwE9BFM?t=3") == "PBDUwwE9BFM"
    assert youtube_id("https://www.youtube.com/embed/PBDUwwE9BFM") == "PBDUwwE9BFM"
    assert youtube_id("http://aslbricks.org/New/ASL-Videos/book.mp4") is None
    assert youtube_id("https://www.youtube.com/user/someone") is None


# --------------------------------------------------------------------------------------------------- MS-ASL


def _msasl(tmp_path, **changes) -> MSASLAdapter:
    entry = msasl_fixture.write(tmp_path / "msasl")
    return MSASLAdapter(dataset_config(entry, **changes))


def test_msasl_trimmed_clips_and_frame_cuts(tmp_path):
    records, _ = items(_msasl(tmp_path, options={"clips": "trimmed"}))
    assert [r.pose_path for r in records][:3] == ["train_00000.pose", "train_00001.pose", "train_00002.pose"]
    assert all(r.frame_start is None and r.time_start is None for r in records)
    assert len(records) == 9  # trimmed clips name no YouTube video: even the vanished one has a record
    frames, _ = items(_msasl(tmp_path, options={"cut": "frames"}))
    assert [(r.frame_start, r.frame_end, r.time_start) for r in frames][:2] == [(0, 38, None), (45, 90, None)]


def test_msasl_reads_only_the_configured_splits_and_rejects_bad_clips(tmp_path):
    entry = msasl_fixture.write(tmp_path / "msasl")
    adapter = MSASLAdapter(dataset_config(entry, splits=["dev"]))
    clips = json.loads((tmp_path / "msasl" / "MSASL_val.json").read_text())
    clips += [dict(clips[0], label=6), dict(clips[0], label="3"), dict(clips[0], url="https://vimeo.com/1234"),
              dict(clips[0], start_time=2.0, end_time=1.0), dict(clips[0], end_time=None), "oops"]
    (tmp_path / "msasl" / "MSASL_val.json").write_text(json.dumps(clips))
    (tmp_path / "msasl" / "MSASL_train.json").unlink()  # not read: train is not among the splits
    records, rejects = items(adapter)
    assert [r.source_id for r in records] == ["val_00000", "val_00001", "val_00002"]
    assert [(r.source_id, r.reason) for r in rejects] == [
        ("val_00003", "unknown_label"), ("val_00004", "malformed_annotation"), ("val_00005", "unparsable_url"),
        ("val_00006", "invalid_time_range"), ("val_00007", "malformed_annotation"),
        ("val_00008", "malformed_annotation")]
    with pytest.raises(UserError, match="MSASL_train.json"):
        items(MSASLAdapter(dataset_config(entry, splits=["train", "dev"])))


# ------------------------------------------------------------------------------------------------- NMFs-CSL


def _nmfs(tmp_path, **changes) -> NMFsCSLAdapter:
    return NMFsCSLAdapter(dataset_config(nmfs_fixture.write(tmp_path / "nmfs"), **changes))


def test_nmfs_csl_pickles_need_an_explicit_opt_in(tmp_path):
    with pytest.raises(UserError, match="allow_pickle: true"):
        items(_nmfs(tmp_path, options={"allow_pickle": False}))


def test_nmfs_csl_vocabulary_makes_pairs_and_unknown_labels_are_rejected(tmp_path):
    entry = nmfs_fixture.write(tmp_path / "nmfs")
    (tmp_path / "nmfs" / "vocab.txt").write_text("\ufeff0\t你好\r\n1\t谢谢\r\n2\t再见\r\n", encoding="utf-8")  # no 3
    adapter = NMFsCSLAdapter(dataset_config(entry, options={"vocabulary": "vocab.txt"}))
    records, rejects = items(adapter)
    assert {(r.label, r.gloss, r.text, r.text_language, r.paired) for r in records} == {
        (0, "你好", "这个词是你好。", "zh", True), (1, "谢谢", "这个词是谢谢。", "zh", True),
        (2, "再见", "这个词是再见。", "zh", True)}
    assert Counter(r.reason for r in rejects) == {"unknown_label": 5} and adapter.name == "nmfs_csl"
    english = items(NMFsCSLAdapter(dataset_config(entry, text_language="en", options={"vocabulary": "vocab.txt"})))[0]
    assert english[0].text == "This word is 你好." and english[0].text_language == "en"


def test_nmfs_csl_text_split_lists_and_the_dev_split(tmp_path):
    root = tmp_path / "nmfs"
    nmfs_fixture.write(root)
    (root / "train.txt").write_text("# name label\n000000_P01_1 0\n000001_P01_1 1\n\nbroken-line\n"
                                    "000002_P01_1 two\n000001_P01_1 1\n", encoding="utf-8")
    adapter = _nmfs(tmp_path, options={"allow_pickle": False, "split_files": {"train": "train.txt"}})
    records, rejects = items(adapter)
    assert [(r.source_id, r.label, r.pose_key, r.paired) for r in records] == [
        ("000000_P01_1", 0, "000000_P01_1", False), ("000001_P01_1", 1, "000001_P01_1", False)]
    assert [(r.reason, r.detail.split(":")[0]) for r in rejects] == [
        ("malformed_annotation", "train.txt[2]"), ("malformed_annotation", "train.txt[3]"),
        ("duplicate_id", "train.txt[4]")]
    dev = items(_nmfs(tmp_path, options={"split_files": {"dev": "dev.pkl", "test": "test.pkl"}}))[0]
    assert Counter(r.split for r in dev) == {"dev": 8, "test": 8}
    with pytest.raises(UserError, match="splits are train / dev / test"):
        _nmfs(tmp_path, options={"split_files": {"val": "dev.pkl"}}).split_files()


def test_split_pickles_may_be_gzipped_dicts_and_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "split.pkl"
    with gzip.open(path, "wb") as f:
        pickle.dump({"a": {"label": 1}, "b": 2}, f)
    assert read_split_list(path, True, "t") == [{"label": 1, "name": "a"}, {"name": "b", "label": 2}]
    path.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a readable split pickle"):
        read_split_list(path, True, "t")


# --------------------------------------------------------------------------------------------------- SLR500


def _slr500(tmp_path, **changes) -> SLR500Adapter:
    return SLR500Adapter(dataset_config(slr500_fixture.write(tmp_path / "slr500"), **changes))


def test_slr500_protocol_signers_and_dictionary_options(tmp_path):
    records, _ = items(_slr500(tmp_path, options={"train_signers": 2}))
    assert {(r.signer, r.split) for r in records} == {("P01", "train"), ("P02", "train"), ("P36", "test"),
                                                      ("P37", "test"), ("P50", "test")}
    unpaired, _ = items(_slr500(tmp_path, options={"dictionary": None}))
    assert all(not r.paired and r.text == "" and r.label >= 0 for r in unpaired) and len(unpaired) == 15
    with pytest.raises(UserError, match="words.txt"):
        _slr500(tmp_path, options={"dictionary": "words.txt"})
    entry = slr500_fixture.write(tmp_path / "short")
    (tmp_path / "short" / "dictionary.txt").write_text("000000\t你\n000001\t你们\n", encoding="utf-8")
    _, rejects = items(SLR500Adapter(dataset_config(entry)))
    assert Counter(r.reason for r in rejects) == {"unknown_label": 5}


def test_slr500_clip_list_and_unparsable_names(tmp_path):
    root = tmp_path / "slr500"
    slr500_fixture.write(root)
    (root / "videos.txt").write_text("color/000002/P07_02_00_1_color.avi\r\n./color/000000/P41_05_00_4_color.avi\r\n"
                                     "color/extra/P01_01_00_0_color.avi\r\ncolor/000001/README.avi\r\n\r\n"
                                     "color\\000001\\P03_01_00_0_color.avi\r\n", encoding="utf-8")
    records, rejects = items(_slr500(tmp_path, options={"clip_list": "videos.txt"}))
    assert [(r.source_id, r.split, r.pose_path, r.gloss) for r in records] == [
        ("000000/P41_05_00_4_color", "test", "000000/P41_05_00_4_color.npy", "你"),
        ("000001/P03_01_00_0_color", "train", "000001/P03_01_00_0_color.npy", "你们"),
        ("000002/P07_02_00_1_color", "train", "000002/P07_02_00_1_color.npy", "我")]
    assert [(r.source_id, r.reason) for r in rejects] == [("color/000001/README", "unparsable_name"),
                                                          ("color/extra/P01_01_00_0_color", "unparsable_name")]


def test_slr500_clips_from_a_pickle_collection(tmp_path):
    root = tmp_path / "slr500"
    slr500_fixture.write(root)
    names = ["000001/P40_01_00_0_color.avi", "000000/P01_01_00_0_color", "stray"]
    write_pickle_collection(root / "kp.pkl", {n: fixture_keypoints(12, i) for i, n in enumerate(names)})
    poses = {"root": str(root / "kp.pkl"), "format": "pickle", "allow_pickle": True, "width": 1280, "height": 720}
    records, rejects = items(_slr500(tmp_path, poses=poses))
    assert [(r.source_id, r.split, r.pose_key, r.pose_path) for r in records] == [
        ("000000/P01_01_00_0_color", "train", "000000/P01_01_00_0_color", ""),
        ("000001/P40_01_00_0_color", "test", "000001/P40_01_00_0_color.avi", "")]
    assert [r.reason for r in rejects] == ["unparsable_name"]


# ------------------------------------------------------------------------------------------------- helpers


def test_vocabulary_files_in_both_layouts(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("\ufeff0\tbook\r\n1\tthank you\r\n\r\n3\tdon't want\r\n", encoding="utf-8")
    assert read_vocabulary(path) == {0: "book", 1: "thank you", 3: "don't want"}
    path.write_text("你\n你们\n我\n\n", encoding="utf-8")  # trailing blank lines are fine
    assert read_vocabulary(path) == {0: "你", 1: "你们", 2: "我"}
    path.write_text("你\n\n我\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 2 is empty"):
        read_vocabulary(path)
    path.write_text("0 a\n0 b\n", encoding="utf-8")
    with pytest.raises(UserError, match="label 0 appears twice"):
        read_vocabulary(path)


def test_pose_name_templates_are_checked_up_front():
    fields = {"video_id": "1", "label": 0}
    assert PoseNameTemplate("{label:04d}/{video_id}", fields, "t").format({"video_id": "9", "label": 3}) == "0003/9"
    for bad in ("fixed-name", "{}", "{gloss}", "{label:q}"):
        with pytest.raises(UserError):
            PoseNameTemplate(bad, fields, "t")


# ----------------------------------------------------------------------------------------------- real data


def test_real_wlasl_release_labels_splits_and_subsets(realdata):
    root = realdata / "wlasl"
    adapter = WLASLAdapter(DatasetConfig(adapter="wlasl", annotation_root=str(root),
                                         poses=PoseSourceConfig(root="unused", format="pose")))
    records, rejects = items(adapter)
    assert not rejects and len(records) == 21083
    assert Counter(r.split for r in records) == {"train": 14289, "dev": 3916, "test": 2878}
    assert all(r.paired and r.text == f"This word is {r.gloss}." for r in records)
    assert sum(r.source_id.startswith("0") for r in records) == 2899  # leading zeros kept
    by_id = {r.source_id: r for r in records}
    assert by_id["05237"].pose_path == "05237.pose"
    assert {r.gloss for r in records if " " in r.gloss or "'" in r.gloss} >= {"thank you", "don't want"}
    # Labels are the official class indices (nslt files), and WLASL-N is exactly the labels below N.
    split_names = {"train": "train", "val": "dev", "test": "test"}
    for n in (100, 300, 1000, 2000):
        nslt = json.loads((root / f"nslt_{n}.json").read_text())
        shared = set(nslt) & set(by_id)
        assert len(set(nslt) - shared) == {100: 0, 300: 1, 1000: 6, 2000: 12}[n]  # re-released JSON lacks a few
        assert all(by_id[v].label == nslt[v]["action"][0] and by_id[v].split == split_names[nslt[v]["subset"]]
                   for v in shared)
        assert {v for v, r in by_id.items() if r.label < n} == shared
    # wlasl_class_list.txt agrees with the JSON's order, except one corrupted line ("losear" for "lose").
    class_list = read_vocabulary(root / "wlasl_class_list.txt")
    glosses = {r.label: r.gloss for r in records}
    assert {i: (w, glosses[i]) for i, w in class_list.items() if w != glosses[i]} == {163: ("losear", "lose")}


def test_real_wlasl_annotation_with_real_poses_end_to_end(realdata, tmp_path):
    """Two real MMPose sequences of the glosses FOOTBALL and SOUP stand in for two WLASL instances of those glosses;
    every other instance has no pose here and is rejected as such."""
    poses = tmp_path / "poses"
    poses.mkdir()
    shutil.copy(realdata / "poses" / "FOOTBALL.mmpose_wholebody133.pose", poses / "69331.pose")
    shutil.copy(realdata / "poses" / "SOUP.mmpose_wholebody133.pose", poses / "69485.pose")
    dataset = DatasetConfig(adapter="wlasl", annotation_root=str(realdata / "wlasl"),
                            poses=PoseSourceConfig(root=str(poses), format="pose"), splits=["train"])
    summary = build(CurateConfig(output=str(tmp_path / "out"), datasets={"wlasl": dataset}, records_per_shard=2000))
    assert summary["reconciled"] and summary["totals"]["written"] == 2
    assert summary["totals"]["rejects_by_reason"] == {"missing_pose_file": 14289 - 2}
    assert summary["by_dataset"]["wlasl"]["dev"]["excluded_split"] == 3916
    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "out" / "shards").glob("*.tar")))}
    football, soup = samples["wlasl_train_69331"], samples["wlasl_train_69485"]
    assert (football.meta.text, football.meta.label, len(football.pose)) == ("This word is football.", 206, 62)
    assert (soup.meta.text, soup.meta.label, soup.meta.width, soup.meta.height) == ("This word is soup.", 596, 320, 240)
    assert football.meta.fps == pytest.approx(29.97, abs=0.01)


def test_real_msasl_val_release(realdata):
    root = realdata / "msasl"
    config = DatasetConfig(adapter="msasl", annotation_root=str(root), splits=["dev"],
                           poses=PoseSourceConfig(root="unused", format="pose"))
    records, rejects = items(MSASLAdapter(config))
    assert not rejects and len(records) == 5287 and {r.split for r in records} == {"dev"}
    raw = json.loads((root / "MSASL_val.json").read_text())
    classes = json.loads((root / "MSASL_classes.json").read_text())
    assert all(r.gloss == classes[c["label"]] == c["text"] and r.label == c["label"] for r, c in zip(records, raw))
    assert all((r.time_start, r.time_end) == (c["start_time"], c["end_time"]) for r, c in zip(records, raw))
    assert all(len(r.pose_path) == len("XXXXXXXXXXX.pose") for r in records)  # an 11-character YouTube id each
    schemeless = [r for r, c in zip(records, raw) if not c["url"].startswith("http")]
    assert len(schemeless) == 572 and all(r.pose_path.endswith(".pose") for r in schemeless)
    assert {r.pose_path for r, c in zip(records, raw) if "&t=54s" in c["url"]} == {"PBDUwwE9BFM.pose"}
    # signer is -1 for 1108 clips; signer_id is always there.
    assert all(r.signer == str(c["signer_id"]) for r, c in zip(records, raw))
    assert sum(c["signer"] == -1 for c in raw) == 1108
    underscored = {r.text for r in records if "_" in r.gloss}
    assert underscored and all("_" not in text for text in underscored)
    with pytest.raises(UserError, match="MSASL_train.json"):
        items(MSASLAdapter(DatasetConfig(adapter="msasl", annotation_root=str(root), splits=["train"],
                                         poses=PoseSourceConfig(root="unused"))))
