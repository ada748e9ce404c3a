"""Pose extraction from video (slp.extract): the pipeline, resumability and accounting, the main signer, and the
rtmlib / MMPose backends with their models replaced by recorded outputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slp.cli_errors import ArgumentParser, UserError
from slp.extract.backends import BackendSpec, BackendUnavailable, MMPoseBackend, RtmlibBackend
from slp.extract.pipeline import (
    FAILURES_LOG,
    SUMMARY,
    TEMP_SUFFIX,
    VideoJob,
    extract_video,
    list_videos,
    output_path,
    run_extraction,
)
from slp.extract.tracking import Detection, associate, main_track
from slp.pose.convert import COCO_WHOLEBODY, Provenance, pose_provenance
from slp.pose.readers import read_mmpose_json, read_pose
from tests.extract_fakes import (
    RecordedInferencer,
    RecordedWholebody,
    load_predictions,
    recordings,
    write_synthetic_videos,
)

SYNTHETIC = BackendSpec("tests.extract_fakes:synthetic_backend")
REAL = {"FOOTBALL": (640, 360), "SOUP": (320, 240)}


@pytest.fixture(scope="module")
def synthetic_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_synthetic_videos(folder, 5, empty=(3,))
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "sub").mkdir()
    write_synthetic_videos(folder / "sub", 1)
    return folder


def _pose_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.pose"))}


def test_listing_a_folder_or_a_list_file(synthetic_videos, tmp_path):
    jobs = list_videos(synthetic_videos)
    assert [j.key for j in jobs] == ["broken", "sub/video_000", *(f"video_{i:03d}" for i in range(5))]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# videos\n{synthetic_videos / 'video_001.mp4'}\n\n{synthetic_videos / 'sub/video_000.mp4'}\n")
    assert [j.key for j in list_videos(listing)] == ["video_000", "video_001"]  # outside the list's folder: names
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.mkv").write_bytes(b"")
    with pytest.raises(ValueError, match="a.pose"):
        list_videos(tmp_path)
    with pytest.raises(ValueError, match="no such video folder"):
        list_videos(tmp_path / "missing")


def test_extraction_writes_readable_pose_files_logs_failures_and_resumes(synthetic_videos, tmp_path):
    out = tmp_path / "out"
    summary = run_extraction(list_videos(synthetic_videos), out, SYNTHETIC, progress=False)
    assert summary["extracted"] == 5 and summary["failed"] == 2 and summary["already_done"] == 0
    assert summary["failures_by_reason"] == {"no_person": 1, "unreadable_video": 1}
    assert summary["frames"] == 6 * 12 and summary["frames_per_second"] > 0
    assert json.loads((out / SUMMARY).read_text()) == summary
    failures = [json.loads(line) for line in (out / FAILURES_LOG).read_text().splitlines()]
    assert [(f["key"], f["reason"]) for f in failures] == [("broken", "unreadable_video"), ("video_003", "no_person")]
    assert sorted(_pose_files(out)) == ["sub/video_000.pose", "video_000.pose", "video_001.pose", "video_002.pose",
                                        "video_004.pose"]
    seq = read_pose(out / "video_001.pose")  # the curation reader reads it back
    assert seq.keypoints.shape == (12, 133, 3) and (seq.width, seq.height) == (96, 64) and seq.fps == 25.0
    np.testing.assert_allclose(seq.keypoints[..., 2], 0.9, rtol=1e-6)
    raw = (out / "video_001.pose").read_bytes()
    assert pose_provenance(raw, COCO_WHOLEBODY) == Provenance(COCO_WHOLEBODY, "synthetic 1.0",
                                                              str(synthetic_videos / "video_001.mp4"))
    before = _pose_files(out)

    # A killed run's temporary file is never a .pose, and the next run removes it; finished videos are skipped.
    (out / f".video_002.999{TEMP_SUFFIX}").write_bytes(b"partial")
    (out / "video_004.pose").unlink()
    again = run_extraction(list_videos(synthetic_videos), out, SYNTHETIC, progress=False)
    assert again["already_done"] == 4 and again["extracted"] == 1 and again["failed"] == 2
    assert again["temporaries_removed"] == 1
    assert _pose_files(out) == before
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))


def test_a_video_without_frames_and_an_estimator_crash_are_logged_failures(synthetic_videos, tmp_path):
    import av

    # An MP4 whose index (moved first by faststart) survives while its frames were cut off: it opens, and decodes
    # to no frame.
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 96, 3), np.uint8))), *stream.encode()]:
            container.mux(packet)
    data = whole.read_bytes()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "empty.mp4").write_bytes(data[:data.index(b"mdat") + 4])
    (tmp_path / "videos" / "ok.mp4").write_bytes((synthetic_videos / "video_000.mp4").read_bytes())
    summary = run_extraction(list_videos(tmp_path / "videos"), tmp_path / "out",
                             BackendSpec(SYNTHETIC.name, {"delay": -1.0}), progress=False)
    # A negative sleep raises in the "model": the video is a processing_error with its traceback, the run goes on.
    assert summary["failures_by_reason"] == {"processing_error": 1, "zero_frames": 1}
    failures = {f["key"]: f for f in map(json.loads, (tmp_path / "out" / FAILURES_LOG).read_text().splitlines())}
    assert "Traceback" in failures["ok"]["detail"] and "sleep length must be non-negative" in failures["ok"]["detail"]


def test_two_local_workers_write_the_same_bytes(synthetic_videos, tmp_path):
    jobs = [j for j in list_videos(synthetic_videos) if j.key.startswith("video")]
    run_extraction(jobs, tmp_path / "one", SYNTHETIC, progress=False)
    summary = run_extraction(jobs, tmp_path / "two", SYNTHETIC, workers=2, batch_size=5, progress=False)
    assert summary["extracted"] == 4 and summary["failed"] == 1
    assert _pose_files(tmp_path / "one") == _pose_files(tmp_path / "two")


def test_an_estimator_that_cannot_run_stops_the_run_with_its_reason(synthetic_videos, tmp_path):
    jobs = list_videos(synthetic_videos)
    with pytest.raises(BackendUnavailable, match="does not run under /bin/false"):
        run_extraction(jobs, tmp_path / "mp", BackendSpec("mediapipe", {"python": "/bin/false"}), progress=False)
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        run_extraction(jobs, tmp_path / "x", BackendSpec("openpifpaf"), progress=False)
    with pytest.raises(BackendUnavailable, match="does not import"):
        run_extraction(jobs, tmp_path / "y", BackendSpec("tests.no_such_module:backend"), progress=False)


# --- the main signer ---------------------------------------------------------------------------------------------


def _person(cx, cy, w, h, value):
    keypoints = np.zeros((133, 3), dtype=np.float32)
    keypoints[:, 0] = np.linspace(cx - w / 2, cx + w / 2, 133)
    keypoints[:, 1] = np.linspace(cy - h / 2, cy + h / 2, 133)
    keypoints[:, 2] = value
    return Detection.from_keypoints(keypoints, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def test_tracks_follow_people_through_gaps_and_never_swap():
    frames = []
    for t in range(30):
        people = [_person(300 + t, 200, 120, 300, 0.9), _person(40 + 2 * t, 250, 60, 150, 0.5)]
        if t in (10, 11):  # the first person is missed for two frames
            people = people[1:]
        frames.append(people[::-1] if t % 2 else people)
    tracks = associate(frames)
    assert len(tracks) == 2
    assert sorted(len(track) for track in tracks) == [28, 30]
    for track in tracks:
        values = {float(det.keypoints[0, 2]) for det in track.values()}
        assert len(values) == 1  # one person per track
    out = main_track(frames, 640, 480)
    assert (out[[10, 11]] == 0).all()  # the signer's missed frames stay empty: no switch to the other person
    assert np.allclose(out[np.r_[0:10, 12:30], :, 2], 0.9)


def _with_bystander(instances: list[list[dict]], width: int) -> list[list[dict]]:
    """Each frame's signer plus a bystander at the frame's left edge: smaller, but larger than the signer in every
    fifth frame (leaning into the camera), listed first in odd frames."""
    out = []
    for t, frame in enumerate(instances):
        signer = frame[0]
        points = np.asarray(signer["keypoints"])
        box = np.asarray(signer["bbox"], dtype=np.float64).reshape(-1)
        scale = 1.3 if t % 5 == 0 else 0.6
        shift = np.array([-box[0] * scale + 2.0, 0.0])  # its box starts at x = 2
        bystander = {"keypoints": (points * scale + shift).tolist(),
                     "keypoint_scores": (np.asarray(signer["keypoint_scores"]) * 0.95).tolist(),
                     "bbox": [(np.r_[box[:2] * scale + shift, box[2:] * scale + shift]).tolist()],
                     "bbox_score": 0.9}
        assert bystander["bbox"][0][0] < 0.1 * width
        out.append([bystander, signer] if t % 2 else [signer, bystander])
    return out


@pytest.mark.parametrize("backend", ["rtmlib", "mmpose"])
def test_two_people_in_the_frame_the_central_signer_is_kept_in_every_frame(realdata, tmp_path, backend):
    video = realdata / "videos" / "FOOTBALL.mp4"
    predictions = realdata / "poses" / "FOOTBALL.mmpose_wholebody133.predictions.json"
    recorded = recordings(video, _with_bystander(load_predictions(predictions), 640))
    model = (RtmlibBackend(model=RecordedWholebody(recorded)) if backend == "rtmlib"
             else MMPoseBackend(inferencer=RecordedInferencer(recorded)))
    model.load()
    result = extract_video(VideoJob(str(video), "FOOTBALL"), model, tmp_path)
    assert result.status == "extracted" and result.frames == 62
    got = read_pose(output_path(tmp_path, "FOOTBALL")).keypoints
    signer = read_mmpose_json(predictions, fps=29.97, width=640, height=360).keypoints
    np.testing.assert_allclose(got, signer, atol=1e-4)


# --- rtmlib and MMPose through recorded outputs ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["rtmlib", "mmpose"])
@pytest.mark.parametrize("name", sorted(REAL))
def test_recorded_backends_write_what_the_model_predicted(realdata, tmp_path, backend, name):
    video = realdata / "videos" / f"{name}.mp4"
    predictions = realdata / "poses" / f"{name}.mmpose_wholebody133.predictions.json"
    recorded = recordings(video, load_predictions(predictions))
    if backend == "rtmlib":
        model = RtmlibBackend(mode="balanced", model=RecordedWholebody(recorded))
    else:
        inferencer = RecordedInferencer(recorded)
        model = MMPoseBackend(inferencer=inferencer)
    model.load()
    result = extract_video(VideoJob(str(video), name), model, tmp_path, batch_size=16)
    assert result.status == "extracted"
    if backend == "mmpose":
        assert inferencer.calls == -(-result.frames // 16)  # one call a batch
    seq = read_pose(output_path(tmp_path, name))
    width, height = REAL[name]
    assert (seq.width, seq.height) == (width, height) and seq.fps == pytest.approx(29.97, abs=1e-4)
    reference = read_mmpose_json(predictions, fps=29.97, width=width, height=height)
    np.testing.assert_allclose(seq.keypoints, reference.keypoints, atol=1e-4)
    provenance = pose_provenance(output_path(tmp_path, name).read_bytes(), COCO_WHOLEBODY)
    expected = "rtmlib unknown RTMW mode=balanced" if backend == "rtmlib" else (
        "mmpose unknown td-hm_hrnet-w48_dark-8xb32-210e_coco-wholebody-384x288")
    assert provenance == Provenance(COCO_WHOLEBODY, expected, os.path.abspath(video))


def test_nobody_detected_by_the_detector_is_a_no_person_failure(realdata, tmp_path):
    video = realdata / "videos" / "SOUP.mp4"
    recorded = recordings(video, [[] for _ in range(41)])
    model = RtmlibBackend(model=RecordedWholebody(recorded))
    model.load()
    result = extract_video(VideoJob(str(video), "SOUP"), model, tmp_path)
    assert (result.status, result.reason, result.frames) == ("failed", "no_person", 41)
    assert not output_path(tmp_path, "SOUP").exists()


# --- the command line --------------------------------------------------------------------------------------------


def _parse(argv):
    from data_curation import extract

    parser = ArgumentParser(prog="slp-curate extract")
    extract.add_arguments(parser)
    return extract, parser.parse_args(argv)


def test_command_line_extracts_and_reports(synthetic_videos, tmp_path, capsys):
    extract, args = _parse(["--backend", SYNTHETIC.name, "--videos", str(synthetic_videos), "--out",
                            str(tmp_path / "o"), "--option", "delay=0", "--no-progress"])
    assert extract.run(args) is None  # the curate CLI exits 0
    printed = capsys.readouterr().out
    assert "7 videos: 5 extracted, 0 already done, 2 failed" in printed
    assert "no_person 1, unreadable_video 1" in printed and "synthetic 1.0" in printed


@pytest.mark.parametrize("argv, message", [
    (["--backend", "openpifpaf"], "one of mediapipe, rtmlib, mmpose"),
    (["--backend", "mediapipe", "--device", "cuda"], "--device applies to the rtmlib and mmpose"),
    (["--backend", "mediapipe", "--option", "python"], "expected KEY=VALUE"),
    (["--backend", "mmpose", "--ray-address", "auto"], "need --engine ray"),
    (["--backend", "mmpose", "--workers", "0"], "at least 1"),
    (["--backend", "mediapipe", "--mediapipe-python", "/no/such/python"], "not an executable"),
    (["--backend", "mediapipe", "--option", "python=/bin/false"], "does not run under /bin/false"),
])
def test_command_line_mistakes_are_one_line_user_errors(synthetic_videos, tmp_path, argv, message):
    extract, args = _parse([*argv, "--videos", str(synthetic_videos), "--out", str(tmp_path / "o"), "--no-progress"])
    with pytest.raises(UserError, match=message):
        extract.run(args)


def test_command_line_names_a_missing_video_source(tmp_path):
    extract, args = _parse(["--backend", "mediapipe", "--videos", str(tmp_path / "nope"), "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--videos: .*no such video folder"):
        extract.run(args)
    assert not os.listdir(tmp_path)
