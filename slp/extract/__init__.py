"""Poses from videos: COCO-WholeBody 133 ``.pose`` files, on one machine or a Ray cluster.

- :mod:`slp.extract.pipeline`: video listing, decoding (PyAV), batching, the ``.pose`` writer, resumable runs with
  a failures log and a summary, the local engine (worker processes);
- :mod:`slp.extract.ray_engine`: the same extraction in a Ray Data actor pool;
- :mod:`slp.extract.backends`: the estimators (MediaPipe Holistic, rtmlib RTMW / DWPose, MMPose HRNet + DarkPose);
- :mod:`slp.extract.tracking`: people associated across frames, and the main signer chosen;
- :mod:`slp.extract.mediapipe_worker`: MediaPipe in its own interpreter.
"""

from slp.extract.backends import BACKENDS, Backend, BackendSpec, BackendUnavailable
from slp.extract.pipeline import VideoJob, extract_video, list_videos, run_extraction
from slp.extract.tracking import Detection, main_track

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "Detection",
    "VideoJob",
    "extract_video",
    "list_videos",
    "main_track",
    "run_extraction",
]
