"""The curation pipeline: every record ends in a shard or in rejects, any worker count gives the same bytes,
and a killed build rerun with the same command ends exactly like a clean one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.pipeline import build
from data_curation.records import AnnotationReject, CurationRecord
from slp.data.shards import iter_samples
from slp.pose.layout import WHOLEBODY_INDICES

WIDTH, HEIGHT = 640, 480


def write_npy_pose(path: Path, frames: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """A (frames, 133, 3) pixel pose with a few missing points (confidence 0)."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((frames, 133, 3), dtype=np.float32)
    kp[..., 0] = rng.uniform(0, WIDTH, (frames, 133)) * scale
    kp[..., 1] = rng.uniform(0, HEIGHT, (frames, 133)) * scale
    kp[..., 2] = rng.uniform(0.3, 1.0, (frames, 133))
    kp[:, 100, 2] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, kp)
    return kp


def toy_config(root: Path, output: Path, **overrides) -> CurateConfig:
    poses = PoseSourceConfig(root=str(root / "poses"), fps=25.0, width=WIDTH, height=HEIGHT)
    dataset = DatasetConfig(adapter="toy", annotation_root=str(root), poses=poses, exclude_splits=["test"])
    values = dict(output=str(output), datasets={"toy": dataset}, records_per_shard=4, workers=1, min_frames=4)
    values.update(overrides)
    return CurateConfig(**values)


def _record(i: int, **fields) -> CurationRecord:
    values = dict(dataset="toy", split="train", source_id=f"{i:05d}", sign_language="ASL", text_language="en",
                  pose_path=f"clip{i % 7}.npy", text=f"This word is sign{i % 5}.", gloss=f"sign{i % 5}",
                  label=i % 5, paired=True, signer=f"s{i % 3}", key=f"toy_{i:05d}")
    values.update(fields)
    return CurationRecord(**values)


def toy_corpus(root: Path, num_records: int = 40) -> list:
    """Pose files under ``root/poses`` and ``num_records`` good records, every 10th unpaired."""
    for clip in range(7):
        write_npy_pose(root / "poses" / f"clip{clip}.npy", frames=12 + clip, seed=clip)
    return [("toy", _record(i, paired=i % 10 != 0, text="" if i % 10 == 0 else f"This word is sign{i % 5}.",
                            text_language="" if i % 10 == 0 else "en"))
            for i in range(num_records)]


def build_output_files(output: Path) -> dict[str, bytes]:
    """Every file of a finished build that another run must reproduce byte for byte (not the timing summary)."""
    files = {p.relative_to(output).as_posix(): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()}
    files.pop("summary.json")
    return files


def test_every_record_ends_in_a_shard_or_in_rejects(tmp_path):
    poses = tmp_path / "poses"
    base = write_npy_pose(poses / "long.npy", frames=30, seed=1)
    write_npy_pose(poses / "huge.npy", frames=10, seed=2, scale=1e5)  # every point far outside the frame
    np.save(poses / "broken.npy", np.zeros((10, 17, 3), dtype=np.float32))  # not 133 points
    good = dict(pose_path="long.npy")
    items = [
        _record(0, **good, frame_start=5, frame_end=15, key="k0"),
        _record(1, **good, time_start=0.2, time_end=1.2, key="k1"),  # frames round(5.0)=5 .. round(30.0)=30
        _record(2, **good, paired=False, text="", text_language="", key="k2"),
        _record(12, **good, key="k0"),  # same key as record 0: written under a suffixed key
        _record(3, pose_path="nowhere.npy", key="k3"),
        _record(4, pose_path="broken.npy", key="k4"),
        _record(5, **good, frame_start=20, frame_end=40, key="k5"),
        _record(6, **good, frame_start=9, frame_end=9, key="k6"),
        _record(7, **good, frame_start=0, frame_end=3, key="k7"),
        _record(8, pose_path="huge.npy", key="k8"),
        _record(9, **good, text="   ", key="k9"),
        _record(10, **good, text="bad \ufffd text", key="k10"),
        _record(11, **good, text="bell \x07", key="k11"),
        AnnotationReject(dataset="toy", split="dev", source_id="x", reason="reversed_cue", detail="cue 3: end<start"),
        _record(13, **good, split="test", key="k13"),  # excluded split: neither written nor rejected
        _record(14, **good, split="dev", key="k14"),
    ]
    cfg = toy_config(tmp_path, tmp_path / "out", records_per_shard=5)
    summary = build(cfg, [("toy", item) for item in items])

    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    renamed = "k0-" + hashlib.sha1(b"toy/train/00012").hexdigest()[:8]
    assert [row["key"] for row in manifest] == ["k0", "k1", "k2", renamed, "k14"]
    assert [row["frames"] for row in manifest] == [10, 25, 30, 30, 30]
    assert manifest[0]["text"] == "This word is sign0." and manifest[2]["text"] == "" and not manifest[2]["paired"]
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert {row["key"] or row["source_id"]: row["reason"] for row in rejects} == {
        "k3": "missing_pose_file", "k4": "unsupported_layout", "k5": "frame_range_outside", "k6": "empty_clip",
        "k7": "too_few_frames", "k8": "no_detections", "k9": "empty_text", "k10": "undecodable_text",
        "k11": "undecodable_text", "x": "reversed_cue",
    }
    assert "broken.npy" in next(r["detail"] for r in rejects if r["key"] == "k4")
    warnings = pq.read_table(tmp_path / "out" / "warnings.parquet").to_pylist()
    assert [(w["key"], w["reason"]) for w in warnings] == [(renamed, "key_collision")]
    assert warnings[0]["detail"] == (f"key 'k0' was taken by an earlier record; toy/train/00012 is written as "
                                     f"{renamed!r}")

    totals = summary["totals"]
    assert totals == {"records_in": 15, "excluded_split": 1, "written": 5, "paired": 4, "unpaired": 1,
                      "rejected": 10, "rejects_by_reason": totals["rejects_by_reason"], "warnings": 1,
                      "warnings_by_reason": {"key_collision": 1}}
    assert summary["reconciled"] and totals["rejects_by_reason"]["undecodable_text"] == 2
    assert summary["by_dataset"]["toy"]["test"]["excluded_split"] == 1
    assert summary["by_dataset"]["toy"]["dev"] == {
        "records_in": 2, "excluded_split": 0, "written": 1, "paired": 1, "unpaired": 0, "rejected": 1,
        "rejects_by_reason": {"reversed_cue": 1}, "warnings": 0, "warnings_by_reason": {}}
    assert summary["by_sign_language"]["ASL"]["samples"] == 5
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["totals"] == totals

    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "out" / "shards").glob("*.tar")))}
    assert sorted(samples) == sorted(["k0", "k1", "k14", "k2", renamed])
    clip = base[5:15][:, WHOLEBODY_INDICES]
    expected = np.where(clip[..., 2:] > 0, clip / np.array([WIDTH, HEIGHT, 1], dtype=np.float32), 0.0)
    np.testing.assert_allclose(samples["k0"].pose.astype(np.float32), expected, atol=2e-3)
    meta = samples["k1"].meta
    assert (meta.frame_start, meta.frame_end, meta.fps, meta.width, meta.height) == (5, 30, 25.0, WIDTH, HEIGHT)
    # Jobs of five selected records (k13 was excluded before the cut): job 1 wrote nothing, so has no shard.
    assert sorted(p.name for p in (tmp_path / "out" / "shards").iterdir()) == [
        "sl15m-000000.tar", "sl15m-000002.tar"]


def test_record_geometry_overrides_the_dataset_frame_size(tmp_path):
    """Web datasets mix resolutions: a record that knows its video's size and fps is normalised by them."""
    kp = write_npy_pose(tmp_path / "poses" / "clip0.npy", frames=12, seed=0)
    items = [("toy", _record(0, key="hd", width=1280, height=720, fps=30.0)),
             ("toy", _record(1, key="default", pose_path="clip0.npy"))]
    build(toy_config(tmp_path, tmp_path / "out"), items)
    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "out" / "shards").glob("*.tar")))}
    hd, default = samples["hd"], samples["default"]
    assert (hd.meta.width, hd.meta.height, hd.meta.fps) == (1280, 720, 30.0)
    assert (default.meta.width, default.meta.height, default.meta.fps) == (WIDTH, HEIGHT, 25.0)
    seen = kp[..., 2] > 0
    np.testing.assert_allclose(hd.pose[..., 0].astype(np.float32)[seen[:, WHOLEBODY_INDICES]],
                               (kp[..., 0] / 1280)[:, WHOLEBODY_INDICES][seen[:, WHOLEBODY_INDICES]], atol=1e-3)


def test_worker_count_gives_byte_identical_outputs(tmp_path):
    items = toy_corpus(tmp_path, num_records=30)
    one = build(toy_config(tmp_path, tmp_path / "w1", workers=1), items)
    two = build(toy_config(tmp_path, tmp_path / "w2", workers=2), items)
    assert one["totals"] == two["totals"] and one["jobs"] == two["jobs"] == 8
    files = build_output_files(tmp_path / "w1")
    assert len([name for name in files if name.startswith("shards/")]) == 8
    assert files == build_output_files(tmp_path / "w2")


def run_blocking_build(root: str, output: str, block_after: int) -> None:
    """The killed run of the resume test: workers=2, and the record stream stalls after ``block_after`` records."""
    items = toy_corpus(Path(root))

    def stalling():
        for i, item in enumerate(items):
            if i == block_after:
                time.sleep(600)
            yield item

    build(toy_config(Path(root), Path(output), workers=2), stalling())


def test_killed_build_resumes_to_the_clean_result(tmp_path):
    items = toy_corpus(tmp_path)
    build(toy_config(tmp_path, tmp_path / "clean"), items)
    clean = build_output_files(tmp_path / "clean")

    out = tmp_path / "killed"
    code = ("import sys; from tests.test_curation_pipeline import run_blocking_build; "
            "run_blocking_build(sys.argv[1], sys.argv[2], 12)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(out)], start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "parts").glob("*.json"))) < 3:
            assert proc.poll() is None, "the build ended before it was killed"
            assert time.monotonic() < deadline, "no sidecar appeared"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.parquet").exists()
    # What a kill in the middle of a job leaves: a half-written temporary shard, and a shard whose sidecar was
    # never written.
    (out / "shards" / ".sl15m-000005.tar.tmp").write_bytes(b"half a tar")
    (out / "parts" / "sl15m-000002.json").unlink()

    summary = build(toy_config(tmp_path, out), items)
    assert summary["resumed_jobs"] == 2 and summary["jobs"] == 10
    assert build_output_files(out) == clean

    # Changed inputs are redone, unchanged ones resumed; a smaller input drops the shards it no longer makes.
    items[1] = ("toy", _record(1, text="A changed sentence."))
    summary = build(toy_config(tmp_path, out), items[:30])
    assert summary["resumed_jobs"] == 6 and summary["jobs"] == 8 and summary["stale_files_removed"] == 4
    assert sorted(p.name for p in (out / "shards").iterdir())[-1] == "sl15m-000007.tar"
    texts = pq.read_table(out / "manifest.parquet", columns=["key", "text"]).to_pylist()
    assert texts[1] == {"key": "toy_00001", "text": "A changed sentence."} and len(texts) == 30


@pytest.mark.parametrize("allow_pickle", [True, False])
def test_pickle_collections_need_the_opt_in(tmp_path, allow_pickle):
    import pickle

    rng = np.random.default_rng(0)
    collection = {f"clip{i}": rng.uniform(1, 400, (8 + i, 133, 3)).astype(np.float32) for i in range(3)}
    (tmp_path / "poses").mkdir()
    with open(tmp_path / "poses" / "all.pkl", "wb") as f:
        pickle.dump(collection, f)
    cfg = toy_config(tmp_path, tmp_path / "out")
    cfg.datasets["toy"].poses.allow_pickle = allow_pickle
    items = [("toy", _record(i, pose_path="all.pkl", pose_key=f"clip{i}")) for i in range(4)]
    summary = build(cfg, items)
    if allow_pickle:
        assert summary["totals"]["written"] == 3
        assert summary["totals"]["rejects_by_reason"] == {"missing_pose_file": 1}  # clip3 is not in the file
        assert pq.read_table(tmp_path / "out" / "manifest.parquet")["frames"].to_pylist() == [8, 9, 10]
    else:
        assert summary["totals"]["rejects_by_reason"] == {"unreadable_pose": 4}
        assert "allow_pickle" in pq.read_table(tmp_path / "out" / "rejects.parquet")["detail"][0].as_py()


def test_real_pose_files(tmp_path, realdata):
    """Real MMPose / OpenPifPaf / MediaPipe sequences are curated (fps and size from .pose files, the config's for
    JSON; MediaPipe converted to COCO-WholeBody, its layout in the metadata and the manifest); a cue in seconds
    becomes frames at 29.97 fps."""
    poses = realdata / "poses"
    cfg = toy_config(tmp_path, tmp_path / "out")
    cfg.datasets["toy"].poses = PoseSourceConfig(root=str(poses), fps=29.97, width=320, height=240)
    items = [
        _record(0, pose_path="FOOTBALL.mmpose_wholebody133.pose", key="football"),
        _record(1, pose_path="FOOTBALL.mmpose_wholebody133.pose", time_start=0.5, time_end=1.5, key="cue"),
        _record(2, pose_path="SOUP.mmpose_wholebody133.pose", key="soup_pose"),
        _record(3, pose_path="SOUP.mmpose_wholebody133.predictions.json", key="soup_json"),
        _record(4, pose_path="SOUP.openpifpaf_wholebody133.pose", key="soup_pifpaf"),
        _record(5, pose_path="FOOTBALL.mediapipe_holistic.pose", key="mediapipe"),
    ]
    summary = build(cfg, [("toy", item) for item in items])
    assert summary["totals"]["written"] == 6
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").num_rows == 0
    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "out" / "shards").glob("*.tar")))}
    assert samples["mediapipe"].meta.pose_layout.startswith("mediapipe_holistic_")
    assert (samples["football"].meta.pose_layout, samples["soup_json"].meta.pose_estimator) == (
        "coco_wholebody_133", "mmpose")
    manifest = {r["key"]: r for r in pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert manifest["mediapipe"]["pose_layout"] == samples["mediapipe"].meta.pose_layout
    football = samples["football"]
    assert (len(football.pose), football.meta.width, football.meta.height) == (62, 640, 360)
    assert football.meta.fps == pytest.approx(29.97, abs=1e-3)
    cue = samples["cue"]
    assert (cue.meta.frame_start, cue.meta.frame_end) == (15, 45)  # round(14.985), round(44.955)
    np.testing.assert_array_equal(cue.pose, football.pose[15:45])
    # The .pose and the predictions JSON hold the same sequence (scores above 1 are clipped by the reader).
    soup_pose, soup_json = samples["soup_pose"].pose.astype(np.float32), samples["soup_json"].pose.astype(np.float32)
    assert soup_json.shape == soup_pose.shape == (41, 79, 3)
    np.testing.assert_allclose(soup_json[..., :2], soup_pose[..., :2], atol=2e-3)
    assert (samples["soup_pifpaf"].pose[..., 2] == 0).mean() > 0.05  # OpenPifPaf's missing points stay missing
