"""The nine fixtures with every defect of the issue planted in their annotation and pose files (WLASL JSON, MS-ASL
JSON, NMFs-CSL split pickles, SLR500 folders, Phoenix CSVs, CSL-Daily split / map files, How2Sign TSVs, BOBSL
episode lists and WebVTT), built beside a clean copy: each planted entry ends with its exact reason or warning,
the summary reconciles, no clean sample is lost or changed, and the build is byte-identical on 1 and 2 workers
and when run again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_curation.config import CurateConfig
from data_curation.fixtures import write_fixture_datasets
from data_curation.fixtures.poses import fixture_keypoints, write_pose
from data_curation.pipeline import build
from data_curation.stats import manifest_stats
from slp.config import load_config
from slp.data.shards import iter_samples
from tests.test_curation_pipeline import build_output_files


def _append_lines(path: Path, lines: list[str], eol: str = "\n") -> None:
    text = path.read_bytes().decode("utf-8")
    if text and not text.endswith(eol):
        text += eol
    path.write_bytes((text + eol.join(lines) + eol).encode("utf-8"))


def plant_wlasl(root: Path) -> None:
    poses = root / "poses"
    glosses = json.loads((root / "WLASL_v0.3.json").read_text(encoding="utf-8"))

    def instance(video_id, split="train", **changes):
        return {"bbox": [0, 0, 640, 480], "fps": 25, "frame_end": -1, "frame_start": 1, "instance_id": 0,
                "signer_id": 1, "source": "aslbrick", "split": split, "url": "http://x.org/v.mp4", "variation_id": 0,
                "video_id": video_id, **changes}

    def npz(video_id, keypoints):
        with open(poses / f"{video_id}.npz", "wb") as f:
            np.savez(f, keypoints=keypoints, fps=25.0, width=640, height=480)

    good = fixture_keypoints(20, 900, 640, 480)
    npz("90001", good.astype(np.complex64))
    npz("90002", np.full_like(good, np.nan))
    outside = good.copy()
    outside[:, 0, 0] = 4000.0  # the nose 3000 px right of a 640 px frame: a failed detection
    npz("90003", outside)
    npz("90004", good[:, :17])
    (poses / "90005.npz").mkdir()
    npz("90008", good)
    npz("clip.1", good)
    npz("clip-1", fixture_keypoints(20, 901, 640, 480))
    glosses.append({"gloss": "plant", "instances": [
        instance("90001"), instance("90002"), instance("90003"), instance("90004"), instance("90005"),
        instance(90006), instance("90007", split="validation2"), instance("05237"),
        instance("90008", frame_start=1, frame_end=100), instance("clip.1"), instance("clip-1")]})
    glosses.append(42)
    glosses.append({"gloss": " ", "instances": [instance("90009")]})
    (root / "WLASL_v0.3.json").write_text(json.dumps(glosses, indent=4), encoding="ascii")


def plant_msasl(root: Path) -> None:
    path = root / "MSASL_train.json"
    clips = json.loads(path.read_text(encoding="utf-8"))
    base = dict(clips[0])
    write_pose(root / "poses" / "FpsVideo25x.pose", fixture_keypoints(100, 902, 640, 360), "pose", 25.0, 640, 360)
    clips += [base | {"label": 99}, base | {"label": "1"}, base | {"start_time": 2.0, "end_time": 1.0},
              base | {"url": "http://example.org/video.mp4"},
              base | {"url": "https://www.youtube.com/watch?v=FpsVideo25x", "fps": 29.97, "start_time": 1.0,
                      "end_time": 2.0}]
    path.write_text(json.dumps(clips), encoding="utf-8")


def plant_nmfs_csl(root: Path) -> None:
    with open(root / "train.pkl", "rb") as f:
        entries = pickle.load(f)
    entries += [{"name": "plant_no_label"}, {"name": "plant_negative", "label": -3}, dict(entries[0]),
                {"name": "plant_complex", "label": 1}, {"name": "plant_ragged", "label": 1},
                {"name": "plant_seq_len", "label": 2, "seq_len": 99}]
    with open(root / "train.pkl", "wb") as f:
        pickle.dump(entries, f)
    collection_path = root / "keypoints_hrnet_dark_coco_wholebody.pkl"
    with open(collection_path, "rb") as f:
        collection = pickle.load(f)
    collection.update(plant_complex=fixture_keypoints(20, 903, 512, 512).astype(np.complex64),
                      plant_ragged=[[1.0], [2, 3]], plant_seq_len=fixture_keypoints(20, 904, 512, 512))
    with open(collection_path, "wb") as f:
        pickle.dump(collection, f)


def plant_slr500(root: Path) -> None:
    poses = root / "poses"
    good = fixture_keypoints(20, 905, 1280, 720)
    for name in ("abc/P01_01_00_0_color", "000000/X01_01_00_0_color", "000099/P03_01_00_0_color"):
        write_pose(poses / f"{name}.npy", good, "npy")
    np.save(poses / "000001/P05_01_00_1_color.npy", good.astype(np.complex128))


def plant_phoenix14(root: Path) -> None:
    _append_lines(root / "annotations" / "manual" / "train.corpus.csv",
                  ["plant-0|plant-0/1/*.png|Signer01|EINS|ZWEI", "|plant-1/1/*.png|Signer01|EINS"])


def plant_phoenix14t(root: Path) -> None:
    _append_lines(root / "annotations" / "manual" / "PHOENIX-2014-T.dev.corpus.csv",
                  ["06June_2011_Monday_tagesschau-101|x/1/*.png|-1|-1|Signer01|REGEN|es regnet",
                   "plant-2|x/1/*.png|-1|-1|Signer01|REGEN|es regnet|extra"], "\r\n")


def plant_csl_daily(root: Path) -> None:
    labels = root / "sentence_label"
    _append_lines(labels / "split_1.txt", ["S000011_P0001_T00|validation2", "S000000_P0000_T00|test",
                                           "S000012_P0001_T00|train"])
    _append_lines(labels / "video_map.txt", ["000011|S000011_P0001_T00|20|你 好|你 好 。|你好 。|r w",
                                             "000099|S000013_P0001_T00|20|你 好",
                                             "000012|S000012_P0001_T00|99|你 好|你 好 。|你好 。|r w"])
    write_pose(root / "poses" / "S000012_P0001_T00.npz", fixture_keypoints(20, 906, 512, 512), "npz", 30.0, 512, 512)


def plant_how2sign(root: Path) -> None:
    path = root / "how2sign_realigned_train.csv"
    header, *rows = path.read_bytes().decode("utf-8").split("\r\n")
    unclosed = "plant\tplant-1-rgb_front\tplant_0\tplant_0-1-rgb_front\t0.5\t1.5\t\"This quote is never closed."
    zero = "-fx3Qk9Lm2A\t-fx3Qk9Lm2A-1-rgb_front\t-fx3Qk9Lm2A_8\t-fx3Qk9Lm2A_8-1-rgb_front\t2.0\t2.0\tStop."
    empty = "Em9tyV1de0s\tEm9tyV1de0s-1-rgb_front\tEm9tyV1de0s_0\tEm9tyV1de0s_0-1-rgb_front\t0.5\t1.5\tNothing seen."
    gap = "G4pV1de0abc\tG4pV1de0abc-1-rgb_front\tG4pV1de0abc_0\tG4pV1de0abc_0-1-rgb_front\t1.0\t2.0\tAfter the gap."
    # The unclosed quote comes first: read as one CSV stream it would swallow the good rows after it.
    path.write_bytes("\r\n".join([header, unclosed, *rows[:-1], zero, empty, gap, ""]).encode("utf-8"))
    (root / "poses" / "Em9tyV1de0s-1-rgb_front.json").write_text(
        json.dumps([{"frame_id": t, "instances": []} for t in range(60)]), encoding="utf-8")
    keypoints = fixture_keypoints(40, 907, 1280, 720)
    frames = [{"frame_id": t + (10 if t >= 20 else 0), "instances": [{
        "keypoints": keypoints[t, :, :2].tolist(), "keypoint_scores": keypoints[t, :, 2].tolist(),
        "bbox": [[0, 0, 1280, 720]], "bbox_score": 0.9}]} for t in range(40)]  # frames 20-29 were not written
    (root / "poses" / "G4pV1de0abc-1-rgb_front.json").write_text(json.dumps(frames), encoding="utf-8")


def plant_bobsl(root: Path) -> None:
    _append_lines(root / "bobsl_align_train.txt", ["123 456", "6444555666777888990", "6555666777888999001"])
    subtitles = root / "subtitles" / "manually-aligned"
    (subtitles / "6444555666777888990.vtt").mkdir()
    (subtitles / "6555666777888999001.vtt").write_text("WEBVTT\n00:00:01.000 --> 00:00:02.000\nIn the header.\n",
                                                       encoding="utf-8")


PLANTERS = [plant_wlasl, plant_msasl, plant_nmfs_csl, plant_slr500, plant_phoenix14, plant_phoenix14t,
            plant_csl_daily, plant_how2sign, plant_bobsl]
#: (dataset, source_id) → the reason each planted entry is rejected with.
PLANTED_REJECTS = {
    ("wlasl", "90001"): "unsupported_dtype",
    ("wlasl", "90002"): "no_detections",
    ("wlasl", "90004"): "unsupported_layout",
    ("wlasl", "90005"): "missing_pose_file",
    ("wlasl", "90006"): "malformed_annotation",
    ("wlasl", "90007"): "unknown_split",
    ("wlasl", "05237"): "duplicate_id",
    ("wlasl", "gloss#5"): "malformed_annotation",
    ("wlasl", "90009"): "empty_gloss",
    ("msasl", "train_00004"): "unknown_label",
    ("msasl", "train_00005"): "malformed_annotation",
    ("msasl", "train_00006"): "invalid_time_range",
    ("msasl", "train_00007"): "unparsable_url",
    ("nmfs_csl", "plant_no_label"): "malformed_annotation",
    ("nmfs_csl", "plant_negative"): "malformed_annotation",
    ("nmfs_csl", "000000_P01_1"): "duplicate_id",
    ("nmfs_csl", "plant_complex"): "unsupported_dtype",
    ("nmfs_csl", "plant_ragged"): "unsupported_layout",
    ("slr500", "abc/P01_01_00_0_color"): "unparsable_name",
    ("slr500", "000000/X01_01_00_0_color"): "unparsable_name",
    ("slr500", "000099/P03_01_00_0_color"): "unknown_label",
    ("slr500", "000001/P05_01_00_1_color"): "unsupported_dtype",
    ("phoenix14", "plant-0"): "malformed_row",
    ("phoenix14", "train.corpus.csv:11"): "missing_id",
    ("phoenix14t", "06June_2011_Monday_tagesschau-101"): "duplicate_id",
    ("phoenix14t", "plant-2"): "malformed_row",
    ("csl_daily", "S000011_P0001_T00"): "unknown_split",
    ("csl_daily", "S000000_P0000_T00"): "duplicate_id",
    ("csl_daily", "S000013_P0001_T00"): "malformed_row",
    ("how2sign", "plant_0-1-rgb_front"): "malformed_row",
    ("how2sign", "-fx3Qk9Lm2A_8-1-rgb_front"): "zero_length_cue",
    ("how2sign", "Em9tyV1de0s_0-1-rgb_front"): "no_detections",
    ("bobsl", "123 456"): "malformed_episode_id",
    ("bobsl", "6444555666777888990"): "missing_subtitle_file",
    ("bobsl", "6555666777888999001_0000"): "malformed_cue",
}
#: (dataset, source_id) → the warning of each planted entry that is written.
PLANTED_WARNINGS = {
    ("wlasl", "90003"): "points_outside_frame",
    ("wlasl", "90008"): "frame_count_mismatch",
    ("wlasl", "clip-1"): "key_collision",
    ("msasl", "train_00008"): "fps_mismatch",
    ("nmfs_csl", "plant_seq_len"): "frame_count_mismatch",
    ("csl_daily", "S000012_P0001_T00"): "frame_count_mismatch",
}


def _samples(output: Path) -> dict:
    return {s.key: s for s in iter_samples(sorted((output / "shards").glob("*.tar")))}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(clean output, planted output, planted summary, planted config) — the planted tree built on 1 worker."""
    base = tmp_path_factory.mktemp("planted")
    clean_config = write_fixture_datasets(base / "clean")
    shutil.copytree(base / "clean", base / "planted")
    for plant in PLANTERS:
        plant(base / "planted" / plant.__name__.removeprefix("plant_"))
    planted_config = base / "planted" / "curate.yaml"
    text = planted_config.read_text(encoding="utf-8").replace(str(base / "clean"), str(base / "planted"))
    planted_config.write_text(text, encoding="utf-8")
    build(load_config(CurateConfig, clean_config))
    cfg = load_config(CurateConfig, planted_config)
    summary = build(cfg)
    return base / "clean" / "build", base / "planted" / "build", summary, cfg


def test_every_planted_entry_is_rejected_with_its_reason(builds):
    clean, planted, summary, _ = builds
    clean_rejects = {(r["dataset"], r["source_id"]): r["reason"] for r in pq.read_table(clean / "rejects.parquet")
                     .to_pylist()}
    rejects = pq.read_table(planted / "rejects.parquet").to_pylist()
    found = {(r["dataset"], r["source_id"]): r["reason"] for r in rejects}
    assert len(found) == len(rejects)  # one row per record, none lost
    assert found == clean_rejects | PLANTED_REJECTS
    detail = {(r["dataset"], r["source_id"]): r["detail"] for r in rejects}
    assert "90005.npz: is a directory, not a file" in detail[("wlasl", "90005")]
    assert "6444555666777888990.vtt: is a directory, not a file" in detail[("bobsl", "6444555666777888990")]
    assert detail[("how2sign", "plant_0-1-rgb_front")].endswith(
        "how2sign_realigned_train.csv:2: unclosed quote ('plant\\tplant-1-rgb_front\\tplant_0\\tplant_0-1-rgb_front"
        "\\t0.5\\t1.5\\t\"This quote is never closed.')")
    assert "complex128" in detail[("slr500", "000001/P05_01_00_1_color")]
    assert "(20, 17, 3)" in detail[("wlasl", "90004")]


def test_every_planted_warning_is_counted(builds):
    clean, planted, summary, _ = builds
    assert pq.read_table(clean / "warnings.parquet").num_rows == 0
    warnings = pq.read_table(planted / "warnings.parquet").to_pylist()
    assert {(w["dataset"], w["source_id"]): w["reason"] for w in warnings} == PLANTED_WARNINGS
    assert len(warnings) == summary["totals"]["warnings"] == len(PLANTED_WARNINGS)
    reasons = sorted(PLANTED_WARNINGS.values())
    assert summary["totals"]["warnings_by_reason"] == {r: reasons.count(r) for r in sorted(set(reasons))}


def test_the_planted_summary_reconciles(builds):
    _, planted, summary, _ = builds
    totals = summary["totals"]
    assert summary["reconciled"]
    assert totals["records_in"] == totals["written"] + totals["rejected"]
    assert pq.read_table(planted / "rejects.parquet").num_rows == totals["rejected"]
    assert pq.read_table(planted / "manifest.parquet").num_rows == totals["written"] == len(_samples(planted))
    for name, splits in summary["by_dataset"].items():
        for split, c in splits.items():
            assert c["records_in"] == c["written"] + c["rejected"], (name, split)
            assert c["rejected"] == sum(c["rejects_by_reason"].values())
            assert c["warnings"] == sum(c["warnings_by_reason"].values())


def test_no_clean_sample_is_lost_or_changed(builds):
    clean, planted, _, _ = builds
    before, after = _samples(clean), _samples(planted)
    assert before and set(before) <= set(after)
    for key, sample in before.items():
        assert after[key].meta == sample.meta, key
        assert after[key].pose.tobytes() == sample.pose.tobytes(), key
    # Every good row after the unclosed quote is still read (it would have swallowed the first ones).
    assert "how2sign_train_-fx3Qk9Lm2A_0-1-rgb_front" in after


def test_planted_samples_mean_what_their_files_say(builds):
    _, planted, _, _ = builds
    samples = _samples(planted)
    # "clip.1" and "clip-1" both make the key wlasl_train_clip-1: the later one is renamed, both are written.
    suffix = hashlib.sha1(b"wlasl/train/clip-1").hexdigest()[:8]
    assert samples["wlasl_train_clip-1"].meta.source_id == "clip.1"
    assert samples[f"wlasl_train_clip-1-{suffix}"].meta.source_id == "clip-1"
    # The downloaded video records 25 fps (the annotation says 29.97): 1.0-2.0 s is frames 25-50 at 25 fps.
    fps = samples["msasl_train_train_00008"].meta
    assert (fps.fps, fps.frame_start, fps.frame_end) == (25.0, 25, 50)
    # MMPose frame ids 0-19 then 30-49: frames 20-29 are missing but keep their time, so 1.0-2.0 s at 24 fps is
    # frames 24-48, and frame 30 of the sequence holds the 21st listed frame.
    gap = samples["how2sign_train_G4pV1de0abc_0-1-rgb_front"]
    assert (gap.meta.frame_start, gap.meta.frame_end) == (24, 48)
    assert (gap.pose[:6, :, 2] == 0).all() and (gap.pose[6:, :, 2] > 0).any(axis=1).all()
    assert samples["wlasl_train_90003"].pose[:, 0].tolist() == [[0, 0, 0]] * 20  # the far-out nose is missing


def test_two_entries_sharing_an_adapter_get_their_own_names(builds, tmp_path):
    _, _, _, cfg = builds
    phoenix = cfg.datasets["phoenix14t"]
    twice = CurateConfig(output=str(tmp_path / "twice"), datasets={"phoenix14t": phoenix, "phoenix14t_v2": phoenix},
                         records_per_shard=3)
    summary = build(twice)
    assert summary["reconciled"] and summary["by_dataset"]["phoenix14t"] == summary["by_dataset"]["phoenix14t_v2"]
    manifest = pq.read_table(tmp_path / "twice" / "manifest.parquet").to_pylist()
    keys = [row["key"] for row in manifest]
    assert len(keys) == len(set(keys)) == summary["totals"]["written"] > 0
    assert sum(key.startswith("phoenix14t_v2_") for key in keys) == len(keys) // 2
    assert {row["dataset"] for row in manifest} == {"phoenix14t", "phoenix14t_v2"}
    assert {row["adapter"] for row in manifest} == {"phoenix14t"}
    assert not summary["totals"]["warnings"]  # distinct names, so no key collides
    # Table II's source kind comes from the adapter (each declares its own), not from the entry's name.
    gsl = manifest_stats(tmp_path / "twice" / "manifest.parquet")["table_ii"]["GSL"]
    assert (gsl["sources"], gsl["datasets"]) == (["TV"], ["phoenix14t", "phoenix14t_v2"])


def test_the_planted_build_is_byte_identical_on_two_workers_and_when_run_again(builds, tmp_path):
    _, planted, summary, cfg = builds
    again = build(cfg)  # the same command again: every job is resumed, nothing changes
    assert again["resumed_jobs"] == again["jobs"] == summary["jobs"]
    assert again["totals"] == summary["totals"]
    files = build_output_files(planted)
    two = dataclasses.replace(cfg, output=str(tmp_path / "two"), workers=2)
    assert build(two)["totals"] == summary["totals"]
    assert build_output_files(tmp_path / "two") == files
