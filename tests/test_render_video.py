"""Renders on the video the points come from: each pose frame on its own video frame (by index, from a start, by
time at another fps), the points where they belong, the rest of the frame the video's own pixels; ``slp-curate
render`` on the source video a ``.pose`` of ``slp-curate extract`` records, or on ``--video``; ``slp-predict`` on
its input video; a video that does not read is one line. Real data (FOOTBALL) when it is there."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_curation.cli import main as curate
from finetune.predict_cli import main as slp_predict
from slp.pose.export import write_pose_79
from slp.pose.layout import PART_COLORS, RIGHT_HAND
from slp.pose.readers import read_pose, to_shard_pose
from slp.render import BACKGROUND, VideoError, animation_frames, render_animation, video_frames
from slp.synthetic import SyntheticConfig, generate_isolated
from tests.cli import one_line_error
from tests.extract_fakes import decoded_frames, write_synthetic_videos

WIDTH, HEIGHT, FRAMES = 320, 240, 8
POINT = (0.5, 0.75)  # where the one drawn point is, as a fraction of the frame
BACKEND = "tests.extract_fakes:synthetic_backend"


@pytest.fixture
def video(tmp_path):
    """A synthetic clip: a white rectangle on black, 3 pixels further right each frame (so frames differ)."""
    (path,) = write_synthetic_videos(tmp_path / "videos", 1, frames=FRAMES, width=WIDTH, height=HEIGHT)
    return path


def _one_point(frames: int = FRAMES) -> np.ndarray:
    """A pose whose only detected point is the root of the signer's right hand, at :data:`POINT`."""
    pose = np.zeros((frames, 79, 3), dtype=np.float32)
    pose[:, RIGHT_HAND.start] = (*POINT, 1.0)
    return pose


def _undrawn(pose: np.ndarray, width: int, height: int, fps: float) -> np.ndarray:
    """``(T, H, W)``: the pixels a render leaves to its background (no skeleton, legend or frame number): those
    still the blank canvas's colour when drawn on it, and not next to a drawn one (the faintest anti-aliased edge
    of a letter rounds to the canvas's colour on the canvas, not on a white video)."""
    blank = animation_frames(pose, width=width, height=height, fps=fps)
    drawn = np.stack([(np.asarray(f) != BACKGROUND).any(axis=-1) for f in blank])
    padded = np.pad(drawn, ((0, 0), (1, 1), (1, 1)))
    near = np.zeros_like(drawn)
    for dy, dx in itertools.product((0, 1, 2), repeat=2):
        near |= padded[:, dy:dy + height, dx:dx + width]
    return ~near


def test_points_are_drawn_on_their_own_video_frames(video):
    pose = _one_point()
    frames = animation_frames(pose, fps=25, video=video)
    decoded = decoded_frames(video)
    undrawn = _undrawn(pose, WIDTH, HEIGHT, 25)
    assert len(frames) == FRAMES and {f.size for f in frames} == {(WIDTH, HEIGHT)}  # the video's size
    for t, frame in enumerate(frames):
        pixels = np.asarray(frame)
        assert undrawn[t].mean() > 0.8
        np.testing.assert_array_equal(pixels[undrawn[t]], decoded[t][undrawn[t]])  # the video's own pixels
        other = decoded[(t + 1) % FRAMES][undrawn[t]]
        assert np.abs(pixels[undrawn[t]].astype(int) - other).max() > 200  # and its frame t, not another
        assert frame.getpixel((round(POINT[0] * WIDTH), round(POINT[1] * HEIGHT))) == PART_COLORS["right_hand"]


def test_the_gif_on_a_video_keeps_its_size_pixels_and_points(video, tmp_path):
    pose = _one_point()
    path = render_animation(pose, tmp_path / "on_video.gif", fps=25, video=video)
    decoded = decoded_frames(video)
    with Image.open(path) as gif:
        assert (gif.size, gif.n_frames) == ((WIDTH, HEIGHT), FRAMES)
        for t in (0, FRAMES - 1):
            gif.seek(t)
            pixels = np.asarray(gif.convert("RGB")).astype(int)
            x = 10 + 3 * t + 12  # the middle of frame t's rectangle, below the frame number
            assert np.abs(pixels[40, x] - decoded[t][40, x]).max() <= 8 and pixels[40, x].min() > 200
            assert np.abs(pixels[200, 40] - decoded[t][200, 40]).max() <= 8  # the video's black, not the canvas's
            point = pixels[round(POINT[1] * HEIGHT), round(POINT[0] * WIDTH)]
            assert np.abs(point - PART_COLORS["right_hand"]).max() <= 8


def test_video_frames_follow_the_start_and_the_fps(video):
    decoded = decoded_frames(video)
    np.testing.assert_array_equal(np.stack(video_frames(video, [0, 1], start=3)), np.stack(decoded[3:5]))
    half_rate = video_frames(video, [0, 1, 2], pose_fps=12.5)  # a pose at half the video's 25 fps
    np.testing.assert_array_equal(np.stack(half_rate), np.stack(decoded[0:5:2]))
    with pytest.raises(VideoError, match=f"{FRAMES} frames, but pose frame 2 is video frame {FRAMES}"):
        video_frames(video, [0, 2], start=FRAMES - 2)
    frames = animation_frames(_one_point(4), fps=25, video=video, video_start=4)
    undrawn = _undrawn(_one_point(4), WIDTH, HEIGHT, 25)[0]
    np.testing.assert_array_equal(np.asarray(frames[0])[undrawn], decoded[4][undrawn])


def test_curate_render_draws_an_extracted_pose_on_its_source_video(video, tmp_path, capsys):
    curate(["extract", "--backend", BACKEND, "--videos", str(video.parent), "--out", str(tmp_path / "poses"),
            "--no-progress"])
    pose_file = tmp_path / "poses" / "video_000.pose"
    capsys.readouterr()
    curate(["render", str(pose_file), "--out", str(tmp_path / "r" / "clip")])
    assert f"video_000: {FRAMES} frames on {video} (its source video) → " in capsys.readouterr().out
    decoded = decoded_frames(video)
    with Image.open(tmp_path / "r" / "clip.gif") as gif:
        assert (gif.size, gif.n_frames) == ((WIDTH, HEIGHT), FRAMES)
        gif.seek(FRAMES - 1)
        pixels = np.asarray(gif.convert("RGB")).astype(int)
        assert np.abs(pixels[200, 40] - decoded[-1][200, 40]).max() <= 8
    with Image.open(tmp_path / "r" / "clip_sheet.png") as sheet:
        assert sheet.width == 6 * 240 and (np.asarray(sheet.convert("RGB")) > 200).all(axis=-1).any()

    # --video takes another video (here: the same frames, copied), and says so
    other = tmp_path / "other.mp4"
    other.write_bytes(video.read_bytes())
    curate(["render", str(pose_file), "--video", str(other), "--video-start", "0", "--out", str(tmp_path / "o")])
    assert f"video_000: {FRAMES} frames on {other} → " in capsys.readouterr().out
    # a video shorter than the pose from that start, a missing one, one that is not a video: one line each
    err = one_line_error(capsys, curate, ["render", pose_file, "--video", other, "--video-start", "3", "--out",
                                          tmp_path / "o"])
    assert f"--video {other}: {FRAMES} frames, but pose frame 7 is video frame 10 (the pose starts at frame 3)" in err
    missing = tmp_path / "missing.mp4"
    assert one_line_error(capsys, curate, ["render", pose_file, "--video", missing, "--out", tmp_path / "m"]) \
        == f"slp-curate: error: --video {missing}: no such file"
    (tmp_path / "garbage.mp4").write_bytes(b"not a video")
    err = one_line_error(capsys, curate, ["render", str(pose_file), "--video", str(tmp_path / "garbage.mp4"), "--out",
                                 str(tmp_path / "g")])
    assert err.startswith(f"slp-curate: error: --video {tmp_path / 'garbage.mp4'}: not a readable video (")
    # the recorded video broken: one line naming it and the .pose; gone: a blank canvas, and the line says why
    video.write_bytes(b"not a video any more")
    err = one_line_error(capsys, curate, ["render", str(pose_file), "--out", str(tmp_path / "b")])
    assert err.startswith(f"slp-curate: error: {video}: not a readable video (") and str(pose_file) in err
    video.unlink()
    curate(["render", str(pose_file), "--out", str(tmp_path / "blank")])
    assert f"on a blank canvas (its source video {video} is not there; give --video)" in capsys.readouterr().out
    assert "--video-start 1: there is no video" in one_line_error(
        capsys, curate, ["render", pose_file, "--video-start", "1", "--out", tmp_path / "s"])


def test_predict_renders_a_video_input_on_its_frames(video, tmp_path, capsys):
    from tests.test_hub_export import head_folder_of_untrained_head

    train = list(itertools.islice(generate_isolated(SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1)), 6))
    model, _ = head_folder_of_untrained_head("islr", "unused", train, tmp_path / "model")
    capsys.readouterr()
    slp_predict(["--model", str(model), str(video), "--backend", BACKEND, "--poses-out", str(tmp_path / "poses"),
                 "--render", str(tmp_path / "p.gif"), "--out", str(tmp_path / "p.json")])
    assert f", on {video}]" in capsys.readouterr().out
    (record,) = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert record["render_video"] == str(video)
    decoded = decoded_frames(video)
    with Image.open(tmp_path / "p.gif") as gif:  # the video's frames, then the caption band under them
        assert gif.n_frames == FRAMES and gif.width == WIDTH and gif.height > HEIGHT
        gif.seek(2)
        pixels = np.asarray(gif.convert("RGB")).astype(int)
        assert np.abs(pixels[200, 40] - decoded[2][200, 40]).max() <= 8  # the video's black, not the canvas's
        assert (np.abs(pixels[:HEIGHT] - PART_COLORS["left_hand"]).max(axis=-1) <= 8).sum() > 20  # the hand's points
    # the extracted .pose knows its video too; when that video no longer reads, the input fails in one line
    pose_file = tmp_path / "poses" / "video_000.pose"
    m = train[0].meta
    blank = write_pose_79(tmp_path / "blank.pose", train[0].pose, m.fps, m.width, m.height)  # records no video
    video.write_bytes(b"not a video any more")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        slp_predict(["--model", str(model), str(pose_file), str(blank), "--render", str(tmp_path / "renders"),
                     "--out", str(tmp_path / "b.json"), "--no-progress"])
    assert exit_info.value.code == 1
    summary = json.loads((tmp_path / "b.json").read_text())
    assert (summary["inputs"], summary["predicted"], summary["failed"]) == (2, 1, 1)
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"slp-predict: {pose_file}: cannot render on its video: {video}: not a readable video (")
    assert [p.name for p in (tmp_path / "renders").iterdir()] == ["blank.gif"]
    assert "render_video" not in summary["predictions"][0]


def test_a_real_pose_renders_on_its_real_video(realdata, tmp_path, capsys):
    video = realdata / "videos" / "FOOTBALL.mp4"
    pose_file = realdata / "poses" / "FOOTBALL.mmpose_wholebody133.pose"
    seq = read_pose(pose_file)
    pose = to_shard_pose(seq)
    frames = animation_frames(pose, fps=seq.fps, video=video)
    decoded = decoded_frames(video)
    height, width = decoded[0].shape[:2]
    undrawn = _undrawn(pose, width, height, seq.fps)
    for t in (0, len(pose) // 2, len(pose) - 1):
        assert frames[t].size == (width, height) == (640, 360)
        np.testing.assert_array_equal(np.asarray(frames[t])[undrawn[t]], decoded[t][undrawn[t]])
        assert undrawn[t].mean() > 0.8  # most of the frame is the video; the skeleton is where the person is
    capsys.readouterr()
    curate(["render", str(pose_file), "--video", str(video), "--out", str(tmp_path / "football")])
    assert f"FOOTBALL.mmpose_wholebody133: {len(pose)} frames on {video} → " in capsys.readouterr().out
    with Image.open(tmp_path / "football.gif") as gif:
        assert (gif.size, gif.n_frames) == ((640, 360), len(pose))
    assert os.path.getsize(tmp_path / "football_sheet.png") > 0
