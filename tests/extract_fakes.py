"""Stand-ins for pose estimators at their model boundary, and small synthetic videos, for the extraction tests.

- :func:`synthetic_backend`: a deterministic "estimator" for :func:`write_synthetic_videos`' clips (a bright
  rectangle on black): it runs anywhere, in worker processes and Ray actors too
  (``--backend tests.extract_fakes:synthetic_backend``).
- :class:`RecordedInferencer` / :class:`RecordedWholebody`: MMPose's ``MMPoseInferencer`` and rtmlib's ``Wholebody``
  replaced by recorded outputs (MMPose's own predictions for ../shared/realdata/videos), looked up by the frame's
  pixels, so they answer exactly what the model answered for that frame.
- :func:`unavailable`: skip a test whose optional engine (MediaPipe, Ray) is missing, but fail in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from slp.extract.backends import Backend
from slp.extract.tracking import Detection


def unavailable(reason: str) -> None:
    """Skip on a developer's machine without an optional engine (MediaPipe's venv, Ray); fail in CI, whose `make
    test` installs them (a skip there would hide a broken install). Works at module level too."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def decoded_frames(video: str | Path) -> list[np.ndarray]:
    """The RGB frames of a video, decoded as the pipeline decodes them."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


def frame_digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def write_synthetic_videos(folder: Path, count: int, frames: int = 12, width: int = 96, height: int = 64,
                           empty: tuple[int, ...] = ()) -> list[Path]:
    """``count`` short MPEG-4 clips of a white rectangle moving on black (``video_000.mp4`` ...); the clips whose
    index is in ``empty`` stay black (nobody in them)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"video_{i:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                image = np.zeros((height, width, 3), dtype=np.uint8)
                if i not in empty:
                    x = 10 + (3 * t + 5 * i) % (width - 40)
                    image[12:52, x:x + 24] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(path)
    return paths


class SyntheticBackend(Backend):
    """Finds the bright rectangle of a synthetic clip and spreads the 133 points over it; ``delay`` seconds a frame
    stand for a model's run time (the kill-and-resume tests need runs that last)."""

    name = "synthetic"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    @property
    def estimator(self) -> str:
        return "synthetic 1.0"

    def predict(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            time.sleep(self.delay)
            ys, xs = np.nonzero(frame.mean(axis=-1) > 128)
            if len(xs) == 0:
                out.append([])
                continue
            x1, x2, y1, y2 = xs.min(), xs.max(), ys.min(), ys.max()
            u = (np.arange(133) % 7) / 6
            v = (np.arange(133) // 7) / 18
            keypoints = np.stack([x1 + u * (x2 - x1), y1 + v * (y2 - y1), np.full(133, 0.9)], axis=-1)
            out.append([Detection.from_keypoints(keypoints, [x1, y1, x2, y2])])
        return out


def synthetic_backend(**options) -> SyntheticBackend:
    return SyntheticBackend(**options)


def load_predictions(path: Path) -> list[list[dict]]:
    """MMPose's predictions JSON as one instance list per frame (by frame_id)."""
    frames = json.loads(Path(path).read_text())
    out: list[list[dict]] = [[] for _ in range(max(f["frame_id"] for f in frames) + 1)]
    for frame in frames:
        out[frame["frame_id"]] = frame["instances"]
    return out


def recordings(video: Path, instances: list[list[dict]]) -> dict[str, list[dict]]:
    """Digest of each decoded frame in BGR (what the backends hand to MMPose and rtmlib) → its instances."""
    frames = decoded_frames(video)
    assert len(frames) == len(instances), (video, len(frames), len(instances))
    return {frame_digest(np.ascontiguousarray(f[..., ::-1])): inst for f, inst in zip(frames, instances)}


class RecordedInferencer:
    """``MMPoseInferencer`` at its boundary: images in, one ``{"predictions": [instances]}`` per image out."""

    def __init__(self, recorded: dict[str, list[dict]]):
        self.recorded = recorded
        self.calls = 0

    def __call__(self, images, batch_size=1):
        self.calls += 1
        for image in images:
            yield {"predictions": [self.recorded[frame_digest(image)]]}


class RecordedWholebody:
    """rtmlib's ``Wholebody`` at its two ONNX models: ``det_model(image) -> boxes`` and
    ``pose_model(image, bboxes=boxes) -> (keypoints (N, 133, 2), scores (N, 133))``."""

    def __init__(self, recorded: dict[str, list[dict]]):
        self.recorded = recorded

    def _instances(self, image):
        return self.recorded[frame_digest(image)]

    def det_model(self, image):
        boxes = [np.asarray(inst["bbox"], dtype=np.float32).reshape(-1)[:4] for inst in self._instances(image)]
        return np.stack(boxes) if boxes else np.zeros((0, 4), dtype=np.float32)

    def pose_model(self, image, bboxes):
        instances = self._instances(image)
        np.testing.assert_allclose(np.asarray(bboxes), self.det_model(image))  # the detector's boxes come back
        keypoints = np.stack([np.asarray(inst["keypoints"], dtype=np.float32) for inst in instances])
        scores = np.stack([np.asarray(inst["keypoint_scores"], dtype=np.float32) for inst in instances])
        return keypoints, scores
