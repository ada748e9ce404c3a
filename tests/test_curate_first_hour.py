"""What a new user meets in the first hour of ``slp-curate``: ``extract`` given one video, a folder it may not
read or a list file that is not text; a second ``extract`` over a finished folder; a clip whose points all lie
outside the frame; outputs that cannot be written and inputs of another kind. Each mistake is ONE line,
``slp-curate: error: ...``, exit status 2; each run that can go on does, and says what it skipped."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_curation.cli import main as curate
from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.fixtures import write_fixture_datasets
from data_curation.pipeline import build
from data_curation.records import CurationRecord
from slp.config import load_config
from slp.extract.pipeline import SUMMARY, VIDEO_SUFFIXES
from tests.cli import one_line_error
from tests.extract_fakes import write_synthetic_videos

SYNTHETIC = "tests.extract_fakes:synthetic_backend"
SUFFIXES = ", ".join(VIDEO_SUFFIXES)


def extract(videos: Path | str, out: Path, capsys) -> tuple[list[str], dict]:
    """``slp-curate extract`` with the synthetic estimator: (the lines it printed, the summary it wrote)."""
    curate(["extract", "--backend", SYNTHETIC, "--videos", str(videos), "--out", str(out), "--no-progress"])
    return capsys.readouterr().out.splitlines(), json.loads((out / SUMMARY).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Three synthetic clips of 12 frames, one of them in a subfolder."""
    folder = tmp_path_factory.mktemp("videos")
    write_synthetic_videos(folder, 2)
    write_synthetic_videos(folder / "sub", 1)
    return folder


# --- extract: one video, a folder, a list file ----------------------------------------------------------------


def test_extract_takes_one_video_file_and_says_so(videos, tmp_path, capsys):
    lines, summary = extract(videos / "video_001.mp4", tmp_path / "out", capsys)
    assert lines[0] == f"1 video (a file: {videos / 'video_001.mp4'})"
    assert summary["extracted"] == 1 and summary["files"] == {
        "video_001": {"video": str(videos / "video_001.mp4"), "frames": 12, "estimator": "synthetic 1.0"}}
    assert (tmp_path / "out" / "video_001.pose").is_file()


def test_extract_says_it_read_a_folder_or_a_list_file(videos, tmp_path, capsys):
    lines, _ = extract(videos, tmp_path / "folder", capsys)
    assert lines[0] == f"3 videos (a folder: {videos})"
    listing = tmp_path / "clips.txt"
    listing.write_text(f"# two clips\n{videos / 'video_000.mp4'}\n\n{videos / 'video_001.mp4'}\n",
                       encoding="utf-8")
    lines, summary = extract(listing, tmp_path / "listed", capsys)
    assert lines[0] == f"2 videos (list file {listing})"
    assert summary["videos"] == 2


def test_a_list_file_that_is_not_text_is_one_line(tmp_path, capsys):
    """A video in a container whose suffix is not a video suffix is read as a list file: its bytes do not decode."""
    clip = tmp_path / "clip.3gp"
    clip.write_bytes(b"\x00\x00\x00\x18ftyp3gp4\xe3\x00\x01")
    line = one_line_error(capsys, curate, ["extract", "--backend", SYNTHETIC, "--videos", str(clip), "--out",
                                           str(tmp_path / "o")])
    assert line == (f"slp-curate: error: --videos: {clip}: not a list file: not UTF-8 text (invalid continuation "
                    f"byte at byte 12); a video needs one of the suffixes {SUFFIXES}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, problem", [("gone.mp4", "no such file"),
                                           ("gone", "no such video folder or list file")])
def test_a_missing_video_or_list_is_one_line(tmp_path, capsys, name, problem):
    line = one_line_error(capsys, curate, ["extract", "--backend", SYNTHETIC, "--videos", tmp_path / name, "--out",
                                           tmp_path / "o"])
    assert line == f"slp-curate: error: --videos: {tmp_path / name}: {problem}"


# --- extract: a second run over a finished folder --------------------------------------------------------------


def test_a_second_run_keeps_every_video_and_its_frames_in_the_summary(videos, tmp_path, capsys):
    out = tmp_path / "out"
    _, first = extract(videos, out, capsys)
    assert first["extracted"] == 3 and first["pose_files"] == 3 and first["pose_frames"] == 36
    lines, second = extract(videos, out, capsys)
    assert second["extracted"] == 0 and second["already_done"] == 3 and second["frames"] == 0
    assert second["files"] == first["files"] and set(second["files"]) == {"video_000", "video_001", "sub/video_000"}
    assert all(record["frames"] == 12 for record in second["files"].values())
    assert second["pose_files"] == 3 and second["pose_frames"] == second["already_done_frames"] == 36
    assert second["estimators"] == ["synthetic 1.0"]
    assert lines[-1] == (f"{out} holds 3 .pose files, 36 frames; estimator: synthetic 1.0; summary in "
                         f"{out / SUMMARY}")
    # A killed run leaves no summary: the next one reads the records back from the .pose files themselves.
    (out / SUMMARY).unlink()
    _, third = extract(videos, out, capsys)
    assert third["files"] == first["files"] and third["extracted"] == 0


def test_a_pose_file_that_does_not_read_back_is_extracted_again_or_listed(videos, tmp_path, capsys):
    out = tmp_path / "out"
    extract(videos, out, capsys)
    (out / SUMMARY).write_text("[1, 2", encoding="utf-8")  # a summary cut short: the files are read instead
    (out / "video_001.pose").write_bytes(b"not a pose")
    (out / "stray.pose").write_bytes(b"not a pose either")
    lines, summary = extract(videos, out, capsys)
    assert summary["extracted"] == 1 and summary["already_done"] == 2
    assert summary["files"]["video_001"]["frames"] == 12 and summary["unreadable_pose_files"] == ["stray"]
    assert f"warning: 1 .pose file(s) in {out} do not read back (not counted): stray" in lines


# --- extract: folders it may not read --------------------------------------------------------------------------


def _refuse(monkeypatch, folder: Path) -> list[str]:
    """os.scandir refuses ``folder`` as it does a folder without read permission (tests run as root, where chmod
    stops nothing); returns the folders it was asked for."""
    scandir, asked = os.scandir, []

    def refusing(path="."):
        asked.append(os.fspath(path))
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    return asked


def test_an_unreadable_video_folder_is_one_line(videos, tmp_path, capsys, monkeypatch):
    asked = _refuse(monkeypatch, videos)
    line = one_line_error(capsys, curate, ["extract", "--backend", SYNTHETIC, "--videos", str(videos), "--out",
                                           str(tmp_path / "o")])
    assert str(videos) in asked  # the walk met the refusal
    assert line == f"slp-curate: error: --videos: {videos}: cannot read the folder (Permission denied)"


def test_an_unreadable_subfolder_is_a_warning_and_the_rest_goes_on(videos, tmp_path, capsys, monkeypatch):
    asked = _refuse(monkeypatch, videos / "sub")
    lines, summary = extract(videos, tmp_path / "out", capsys)
    assert str(videos / "sub") in asked
    assert lines[:2] == [f"2 videos (a folder: {videos})",
                         f"warning: --videos: cannot read the folder {videos / 'sub'} (Permission denied); its videos "
                         f"are skipped"]
    assert "1 folder(s) under --videos could not be read; their videos are not counted" in lines
    assert summary["unreadable_folders"] == [f"{videos / 'sub'} (Permission denied)"]
    assert sorted(summary["files"]) == ["video_000", "video_001"] and summary["extracted"] == 2


# --- curation: points outside the frame ------------------------------------------------------------------------


def test_a_clip_whose_points_all_lie_outside_the_frame_says_so(tmp_path):
    rng = np.random.default_rng(0)
    inside = np.concatenate([rng.uniform(0, 640, (12, 133, 1)), rng.uniform(0, 480, (12, 133, 1)),
                             rng.uniform(0.3, 1, (12, 133, 1))], axis=-1).astype(np.float32)
    (tmp_path / "poses").mkdir()
    far = inside.copy()
    far[..., :2] *= 100  # pixels of a 64000-wide frame, or coordinates in other units
    np.save(tmp_path / "poses" / "far.npy", far)
    source = PoseSourceConfig(root=str(tmp_path / "poses"), fps=25.0, width=640, height=480)
    cfg = CurateConfig(output=str(tmp_path / "out"), min_frames=1,
                       datasets={"toy": DatasetConfig(adapter="toy", annotation_root=str(tmp_path), poses=source)})
    record = CurationRecord(dataset="toy", split="train", source_id="far", sign_language="ASL", text_language="en",
                            pose_path="far.npy", text="This word is far.", gloss="far", paired=True, key="toy_far")
    build(cfg, [("toy", record)])
    (reject,) = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert reject["reason"] == "no_detections"
    assert reject["detail"] == (f"{tmp_path / 'poses' / 'far.npy'}: all {12 * 79} detected points in frames [0, 12) "
                                f"lie outside the 640x480 frame (points_outside_frame): check the frame size or the "
                                f"coordinate units")


# --- outputs that cannot be written, inputs of another kind ------------------------------------------------------


@pytest.fixture(scope="module")
def wlasl_build(tmp_path_factory) -> Path:
    """A build of the WLASL fixture."""
    root = tmp_path_factory.mktemp("first_hour_build")
    config = write_fixture_datasets(root / "fixtures", ("wlasl",))
    build(load_config(CurateConfig, config, [f"output={root / 'build'}"]))
    return root / "build"


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["stats", "audit", "fixtures", "synthetic", "render", "export-pose", "extract"])
def test_an_output_under_a_file_is_one_line(command, wlasl_build, videos, tmp_path, capsys):
    blocker = _a_file(tmp_path)
    shard = str(sorted((wlasl_build / "shards").glob("*.tar"))[0])
    key = pq.read_table(wlasl_build / "manifest.parquet").column("key")[0].as_py()
    argv = {"stats": ["stats", str(wlasl_build), "--out", str(blocker)],
            "audit": ["audit", str(wlasl_build), "--out", str(blocker / "report")],
            "fixtures": ["fixtures", "--out", str(blocker)],
            "synthetic": ["synthetic", "--out", str(blocker / "corpus")],
            "render": ["render", shard, "--out", str(blocker / "clip")],
            "export-pose": ["export-pose", shard, "--key", key, "--out", str(blocker / "clip.pose")],
            "extract": ["extract", "--backend", SYNTHETIC, "--videos", str(videos), "--out", str(blocker)]}[command]
    assert one_line_error(capsys, curate, argv) == f"slp-curate: error: --out: {blocker}: is a file, not a folder"


@pytest.mark.parametrize("name", [SUMMARY, "failures.jsonl"])
def test_an_extract_output_whose_summary_is_a_folder_is_one_line(videos, tmp_path, capsys, name):
    (tmp_path / "out" / name).mkdir(parents=True)
    line = one_line_error(capsys, curate, ["extract", "--backend", SYNTHETIC, "--videos", videos, "--out",
                                           tmp_path / "out"])
    assert line == (f"slp-curate: error: --out: {tmp_path / 'out' / name}: is a directory, not a file (the run "
                    f"writes its {name} there)")


def test_a_build_whose_parts_folder_is_a_file_is_one_line(tmp_path, capsys):
    config = write_fixture_datasets(tmp_path / "fixtures", ("wlasl",))
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "parts").write_text("x", encoding="utf-8")
    line = one_line_error(capsys, curate, ["build", "--config", str(config), f"output={tmp_path / 'build'}"])
    assert line == (f"slp-curate: error: {config}: output: {tmp_path / 'build' / 'parts'}: is a file, not a folder "
                    f"(the build writes its parts there)")


def test_a_sidecar_that_is_not_text_is_redone_not_a_traceback(wlasl_build, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(wlasl_build, copy)
    sidecar = sorted((copy / "parts").glob("*.json"))[0]
    sidecar.write_bytes(b"\xff\xfe not json")
    config = write_fixture_datasets(tmp_path / "fixtures", ("wlasl",))
    curate(["build", "--config", str(config), f"output={copy}"])
    summary = json.loads((copy / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_jobs"] == summary["jobs"] - 1  # that job alone was curated again
    assert json.loads(sidecar.read_text(encoding="utf-8"))["records"] > 0


@pytest.mark.parametrize("table, message", [
    (pa.table({"key": ["a"], "frames": [3]}),
     "not a curation manifest (lacks the column(s) ['dataset', 'sign_language', 'fps', 'paired', 'text'])"),
    (None, "not a curation manifest (is a directory, not a file)"),
])
def test_stats_of_another_table_or_a_folder_is_one_line(tmp_path, capsys, table, message):
    manifest = tmp_path / "manifest.parquet"
    if table is None:
        manifest.mkdir()
    else:
        pq.write_table(table, manifest)
    assert one_line_error(capsys, curate, ["stats", str(tmp_path)]) == f"slp-curate: error: {manifest}: {message}"


def test_export_pose_reads_past_a_garbled_member(wlasl_build, tmp_path, capsys):
    """One sample whose pose.npy header does not parse (np.load raises tokenize.TokenError): the next is exported."""
    from slp.data.shards import iter_samples, write_shard

    shard = sorted((wlasl_build / "shards").glob("*.tar"))[0]
    samples = list(iter_samples([shard]))
    garbled = tmp_path / "garbled.tar"
    write_shard(garbled, samples)
    data = garbled.read_bytes()
    header = data.index(b"(", data.index(b"'shape'"))  # the first sample's shape: its closing bracket cut
    end = data.index(b")", header)
    garbled.write_bytes(data[:end] + b" " + data[end + 1:])
    curate(["export-pose", str(garbled), "--key", samples[1].key, "--out", str(tmp_path / "second.pose")])
    assert capsys.readouterr().out.startswith(f"{samples[1].key}: {len(samples[1].pose)} frames")
    line = one_line_error(capsys, curate, ["export-pose", garbled, "--key", samples[0].key, "--out",
                                           tmp_path / "first.pose"])
    assert line == (f"slp-curate: error: {garbled}: no valid sample {samples[0].key} in this shard (1 skipped, "
                    f"first: unreadable pose.npy (TokenError: EOF in multi-line statement))")



def test_a_users_file_among_the_sidecars_is_kept_not_a_traceback(wlasl_build, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(wlasl_build, copy)
    (copy / "parts" / "sl15m-notes.json").write_text("{}", encoding="utf-8")  # matches the sidecars' glob
    config = write_fixture_datasets(tmp_path / "fixtures", ("wlasl",))
    curate(["build", "--config", str(config), f"output={copy}"])
    assert "reconciled: records in = written + rejected (True)" in capsys.readouterr().out
    assert (copy / "parts" / "sl15m-notes.json").is_file()
