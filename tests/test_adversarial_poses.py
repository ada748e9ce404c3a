"""Malformed pose files of every format the readers take (.npy, .npz, MMPose JSON, .pose, pickles), each curated as
a record of one shared build: each must end as a reject with its exact reason, or as a sample with its exact
warning — never as a silently corrupted sample — and the summary must reconcile."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.fixtures.poses import write_pose
from data_curation.pipeline import build
from data_curation.records import CurationRecord
from slp.data.shards import iter_samples
from slp.pose.layout import WHOLEBODY_INDICES

WIDTH, HEIGHT, FPS = 640, 480, 25.0


def keypoints(frames: int = 12, seed: int = 0) -> np.ndarray:
    """(frames, 133, 3) pixel keypoints inside the frame, every point detected."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, WIDTH, (frames, 133, 1)), rng.uniform(0, HEIGHT, (frames, 133, 1)),
                           rng.uniform(0.3, 1.0, (frames, 133, 1))], axis=-1).astype(np.float32)


def mmpose_frames(kp: np.ndarray, ids: list[int] | None = None) -> list[dict]:
    ids = list(range(len(kp))) if ids is None else ids
    return [{"frame_id": i, "instances": [{"keypoints": kp[t, :, :2].tolist(), "keypoint_scores": kp[t, :, 2].tolist(),
                                           "bbox": [[0, 0, WIDTH, HEIGHT]], "bbox_score": 0.9}]}
            for t, i in enumerate(ids)]


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


class Exploding:
    """Unpickling this creates a file: it shows whether a pickle was ever loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@dataclass
class Case:
    name: str
    write: Callable[[Path], None]  # writes the case's pose file(s) under the pose root
    expected: str  # the reject reason, or "warning:<reason>", or "written"
    detail: str = ""  # a substring of the reject / warning detail
    record: dict = field(default_factory=dict)  # record fields besides the defaults
    dataset: str = "toy"


def _npy(name: str, array) -> Callable[[Path], None]:
    return lambda root: np.save(root / name, array, allow_pickle=True)


def _npz(name: str, **arrays) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        with open(root / name, "wb") as f:  # a file object: np.savez would add ".npz" to a name without it
            np.savez(f, **arrays)

    return write


def _bytes(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(data)


def _json(name: str, data) -> Callable[[Path], None]:
    return lambda root: write_json(root / name, data)


def _all_nan():
    kp = keypoints()
    kp[...] = np.nan
    return kp


def _confidence(value: float):
    kp = keypoints()
    kp[..., 2] = value
    return kp


def _partly_outside():
    kp = keypoints()
    kp[:, 0, 0] = 5 * WIDTH  # the nose, 4 frame widths to the right of the frame: a failed detection
    kp[:, 5, 1] = -HEIGHT  # a shoulder a whole frame height above it
    return kp


def _with_inf():
    kp = keypoints()
    kp[2, 7, 0] = np.inf
    return kp


def _other_layout_pose(root: Path) -> None:
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    component = PoseHeaderComponent("BODY", [f"p{i}" for i in range(17)], [], [], "XYC")
    header = PoseHeader(0.2, PoseHeaderDimensions(WIDTH, HEIGHT, 1), [component])
    body = NumPyPoseBody(FPS, np.ones((5, 1, 17, 2), np.float32), np.ones((5, 1, 17), np.float32))
    with open(root / "coco17.pose", "wb") as f:
        Pose(header, body).write(f)


def _truncated_pose(root: Path) -> None:
    write_pose(root / "whole.pose", keypoints(), "pose", FPS, WIDTH, HEIGHT)
    (root / "truncated.pose").write_bytes((root / "whole.pose").read_bytes()[:700])


def _collection(root: Path) -> None:
    with open(root / "all.pkl", "wb") as f:
        pickle.dump({"good": keypoints(), "complex": keypoints().astype(np.complex64), "ragged": [[1, 2], [3]],
                     "shape": np.zeros((4, 17, 3), np.float32)}, f)


def _truncated_npy(root: Path) -> None:
    np.save(root / "whole.npy", keypoints(30))
    (root / "truncated.npy").write_bytes((root / "whole.npy").read_bytes()[:500])


CASES = [
    # .npy
    Case("npy_complex", _npy("complex.npy", keypoints().astype(np.complex128)), "unsupported_dtype", "complex128",
         {"pose_path": "complex.npy"}),
    Case("npy_bool", _npy("bool.npy", np.ones((5, 133, 3), bool)), "unsupported_dtype", "bool",
         {"pose_path": "bool.npy"}),
    Case("npy_text", _npy("text.npy", np.full((5, 133, 3), "x")), "unsupported_dtype", "<U1",
         {"pose_path": "text.npy"}),
    Case("npy_object", _npy("object.npy", np.array([{"a": 1}], dtype=object)), "unreadable_pose",
         "not a plain numpy array", {"pose_path": "object.npy"}),
    Case("npy_truncated", _truncated_npy, "unreadable_pose", "not a plain numpy array",
         {"pose_path": "truncated.npy"}),
    Case("npy_empty_file", _bytes("empty.npy", b""), "unreadable_pose", "No data left", {"pose_path": "empty.npy"}),
    Case("npy_17_points", _npy("coco17.npy", np.ones((5, 17, 3), np.float32)), "unsupported_layout",
         "(5, 17, 3) is not (T, 133, 2|3)", {"pose_path": "coco17.npy"}),
    Case("npy_4d", _npy("people.npy", np.ones((5, 2, 133, 3), np.float32)), "unsupported_layout", "(5, 2, 133, 3)",
         {"pose_path": "people.npy"}),
    Case("npy_all_nan", _npy("nan.npy", _all_nan()), "no_detections", "no kept point is detected",
         {"pose_path": "nan.npy"}),
    Case("npy_confidence_zero", _npy("conf0.npy", _confidence(0.0)), "no_detections", "", {"pose_path": "conf0.npy"}),
    Case("npy_confidence_negative", _npy("confneg.npy", _confidence(-1.0)), "no_detections", "",
         {"pose_path": "confneg.npy"}),
    Case("npy_no_frame", _npy("zero.npy", np.zeros((0, 133, 3), np.float32)), "no_detections", "holds no frame",
         {"pose_path": "zero.npy"}),
    Case("npy_all_far_outside", _npy("far.npy", keypoints() * 1e4), "no_detections", "", {"pose_path": "far.npy"}),
    Case("npy_partly_outside", _npy("partly.npy", _partly_outside()), "warning:points_outside_frame",
         "24 detected point(s) more than 50% of the 640x480 frame outside it", {"pose_path": "partly.npy"}),
    Case("npy_inf_point", _npy("inf.npy", _with_inf()), "written", "", {"pose_path": "inf.npy"}),
    Case("npy_is_a_directory", lambda root: (root / "folder.npy").mkdir(), "missing_pose_file",
         "folder.npy: is a directory, not a file", {"pose_path": "folder.npy"}),
    Case("npy_holds_an_npz", _npz("archive.npy", keypoints=keypoints()), "unreadable_pose",
         "an .npz archive, not an .npy array", {"pose_path": "archive.npy"}),
    Case("unknown_suffix", _bytes("clip.txt", b"1 2 3"), "unreadable_pose", "unknown pose file suffix '.txt'",
         {"pose_path": "clip.txt"}),
    Case("frame_count_mismatch", _npy("short.npy", keypoints(12)), "warning:frame_count_mismatch",
         "the clip has 12 frames, the annotation says 40", {"pose_path": "short.npy", "annotated_frames": 40}),
    # .npz: what the file records wins
    Case("npz_fps_wins", _npz("fps25.npz", keypoints=keypoints(50), fps=25.0, width=WIDTH, height=HEIGHT),
         "warning:fps_mismatch", "the pose file records 25 fps, the annotation says 29.97; the file's is used",
         {"pose_path": "fps25.npz", "fps": 29.97, "time_start": 0.4, "time_end": 1.2}),
    Case("npz_size_wins", _npz("hd.npz", keypoints=keypoints() * 2, fps=25.0, width=1280, height=960),
         "warning:frame_size_mismatch", "records width 1280 (annotation 640), height 960 (annotation 480)",
         {"pose_path": "hd.npz", "width": WIDTH, "height": HEIGHT}),
    Case("npz_frame_range_at_other_fps", _npz("fps50.npz", keypoints=keypoints(60), fps=50.0),
         "frame_range_fps_mismatch", "counted at the annotation's fps",
         {"pose_path": "fps50.npz", "fps": 25.0, "frame_start": 5, "frame_end": 20}),
    Case("npz_fps_text", _npz("fpstext.npz", keypoints=keypoints(), fps="fast"), "unreadable_pose",
         "recorded fps array('fast'", {"pose_path": "fpstext.npz"}),
    Case("npz_negative_width", _npz("negw.npz", keypoints=keypoints(), width=-640.0), "unreadable_pose",
         "recorded width -640.0 is not a positive number", {"pose_path": "negw.npz"}),
    Case("npz_fractional_height", _npz("frac.npz", keypoints=keypoints(), height=480.5), "unreadable_pose",
         "frame height 480.5 is not a positive integer", {"pose_path": "frac.npz"}),
    Case("npz_without_keypoints", _npz("nokp.npz", points=keypoints()), "unreadable_pose",
         "no 'keypoints' array among ['points']", {"pose_path": "nokp.npz"}),
    Case("npz_corrupt_zip", _bytes("corrupt.npz", b"PK\x03\x04 not really a zip"), "unreadable_pose",
         "not a readable .npz archive", {"pose_path": "corrupt.npz"}),
    # MMPose predictions JSON
    Case("json_no_instances", _json("empty_frames.json", [{"frame_id": t, "instances": []} for t in range(8)]),
         "no_detections", "", {"pose_path": "empty_frames.json"}),
    Case("json_empty_list", _json("nothing.json", []), "no_detections", "holds no frame",
         {"pose_path": "nothing.json"}),
    Case("json_frame_gap", _json("gap.json", mmpose_frames(keypoints(5), [0, 1, 2, 6, 7])), "written", "",
         {"pose_path": "gap.json", "time_start": 0.24, "time_end": 0.32}),
    Case("json_frame_gap_whole", _json("gap.json", mmpose_frames(keypoints(5), [0, 1, 2, 6, 7])), "written", "",
         {"pose_path": "gap.json"}),
    Case("json_duplicate_frame_id", _json("dup.json", mmpose_frames(keypoints(3), [0, 1, 1])), "unreadable_pose",
         "frame_id 1 appears twice", {"pose_path": "dup.json"}),
    Case("json_negative_frame_id", _json("neg.json", mmpose_frames(keypoints(2), [-1, 0])), "unreadable_pose",
         "frame_id -1 is not an integer >= 0", {"pose_path": "neg.json"}),
    Case("json_huge_frame_id", _json("huge.json", mmpose_frames(keypoints(2), [0, 10**9])), "unreadable_pose",
         "frame_id 1000000000 with only 2 frames listed", {"pose_path": "huge.json"}),
    Case("json_truncated", _bytes("cut.json", json.dumps(mmpose_frames(keypoints(2))).encode()[:300]),
         "unreadable_pose", "not a JSON file", {"pose_path": "cut.json"}),
    Case("json_object", _json("object.json", {"frames": []}), "unreadable_pose", "expected a list of frame objects",
         {"pose_path": "object.json"}),
    Case("json_17_keypoints", _json("k17.json", [{"frame_id": 0, "instances": [
        {"keypoints": [[1, 1]] * 17, "keypoint_scores": [1] * 17}]}]), "unsupported_layout",
         "keypoints (17, 2) / scores (17,)", {"pose_path": "k17.json"}),
    Case("json_instance_without_keypoints", _json("nokp.json", [{"frame_id": 0, "instances": [{"bbox_score": 1}]}]),
         "unreadable_pose", "frame 0 has no readable instance (KeyError", {"pose_path": "nokp.json"}),
    Case("json_text_keypoints", _json("text.json", [{"frame_id": 0, "instances": [
        {"keypoints": [["a", "b"]] * 133, "keypoint_scores": [1] * 133}]}]), "unreadable_pose", "ValueError",
         {"pose_path": "text.json"}),
    # .pose
    Case("pose_other_layout", _other_layout_pose, "unsupported_layout",
         "layout BODY(17) (17 points) is none of coco_wholebody_133",
         {"pose_path": "coco17.pose"}),
    Case("pose_truncated", _truncated_pose, "unreadable_pose", "not a readable .pose file",
         {"pose_path": "truncated.pose"}),
    Case("pose_garbage", _bytes("garbage.pose", b"\x00\x01garbage" * 10), "unreadable_pose",
         "not a readable .pose file", {"pose_path": "garbage.pose"}),
    Case("pose_fps_wins", lambda root: write_pose(root / "fps30.pose", keypoints(30), "pose", 30.0, WIDTH, HEIGHT),
         "warning:fps_mismatch", "records 30 fps, the annotation says 25", {"pose_path": "fps30.pose", "fps": 25.0}),
    # SLRT pickle collections
    Case("pickle_missing_key", _collection, "missing_pose_file", "no sequence named 'absent' in this collection",
         {"pose_path": "all.pkl", "pose_key": "absent"}),
    Case("pickle_complex", _collection, "unsupported_dtype", "complex64", {"pose_path": "all.pkl",
                                                                          "pose_key": "complex"}),
    Case("pickle_ragged", _collection, "unsupported_layout", "not an array of keypoints",
         {"pose_path": "all.pkl", "pose_key": "ragged"}),
    Case("pickle_wrong_shape", _collection, "unsupported_layout", "(4, 17, 3)",
         {"pose_path": "all.pkl", "pose_key": "shape"}),
    Case("pickle_not_a_dict", lambda root: (root / "list.pkl").write_bytes(pickle.dumps([1, 2])), "unreadable_pose",
         "expected a dict name → (T, 133, 3) array, got list", {"pose_path": "list.pkl", "pose_key": "x"}),
    Case("pickle_corrupt", _bytes("corrupt.pkl", b"\x80\x04not a pickle"), "unreadable_pose", "not a readable pickle",
         {"pose_path": "corrupt.pkl", "pose_key": "x"}),
    Case("pickle_without_opt_in", lambda root: (root / "evil.pkl").write_bytes(
        pickle.dumps({"x": Exploding(str(root / "EXECUTED"))})), "unreadable_pose", "allow_pickle",
         {"pose_path": "evil.pkl", "pose_key": "x"}, dataset="no_pickle"),
    # the extra hand source
    Case("extra_hands_other_length", lambda root: (np.save(root / "main.npy", keypoints(12)),
                                                   np.save(root / "hands" / "main.npy", keypoints(10))),
         "unreadable_extra_hands", "must come from the same video", {"pose_path": "main.npy",
                                                                      "extra_hand_path": "main.npy"}, "hands"),
    Case("extra_hands_is_a_directory", lambda root: (np.save(root / "main2.npy", keypoints(12)),
                                                     (root / "hands" / "main2.npy").mkdir()),
         "missing_extra_hand_file", "main2.npy: is a directory, not a file",
         {"pose_path": "main2.npy", "extra_hand_path": "main2.npy"}, "hands"),
]


def _record(case: Case) -> CurationRecord:
    values = dict(dataset=case.dataset, split="train", source_id=case.name, sign_language="ASL", text_language="en",
                  pose_path="", text="This word is test.", gloss="test", paired=True, key=f"{case.dataset}_{case.name}")
    values.update(case.record)
    return CurationRecord(**values)


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """Every case curated in one build: (root, summary, reject rows, warning rows, samples) by case name."""
    root = tmp_path_factory.mktemp("adversarial_poses")
    poses = root / "poses"
    (poses / "hands").mkdir(parents=True)
    for case in CASES:
        case.write(poses)
    source = PoseSourceConfig(root=str(poses), fps=FPS, width=WIDTH, height=HEIGHT, allow_pickle=True)
    datasets = {
        "toy": DatasetConfig(adapter="toy", annotation_root=str(root), poses=source),
        "no_pickle": DatasetConfig(adapter="toy", annotation_root=str(root),
                                   poses=dataclasses.replace(source, allow_pickle=False)),
        "hands": DatasetConfig(adapter="toy", annotation_root=str(root), poses=source,
                               extra_hands=dataclasses.replace(source, root=str(poses / "hands"))),
    }
    cfg = CurateConfig(output=str(root / "out"), datasets=datasets, records_per_shard=7, min_frames=1)
    summary = build(cfg, [(case.dataset, _record(case)) for case in CASES])
    rejects = {row["source_id"]: row for row in pq.read_table(root / "out" / "rejects.parquet").to_pylist()}
    warnings = {row["source_id"]: row for row in pq.read_table(root / "out" / "warnings.parquet").to_pylist()}
    samples = {s.meta.source_id: s for s in iter_samples(sorted((root / "out" / "shards").glob("*.tar")))}
    return root, summary, rejects, warnings, samples


def test_at_least_forty_distinct_pose_defects():
    assert len({case.name for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_malformed_pose_ends_with_its_reason(curated, case):
    _, _, rejects, warnings, samples = curated
    if case.expected.startswith("warning:") or case.expected == "written":
        assert case.name not in rejects, rejects.get(case.name)
        assert case.name in samples
        if case.expected == "written":
            assert case.name not in warnings, warnings.get(case.name)
        else:
            assert warnings[case.name]["reason"] == case.expected.removeprefix("warning:")
            assert case.detail in warnings[case.name]["detail"]
    else:
        assert case.name not in samples and case.name not in warnings
        assert rejects[case.name]["reason"] == case.expected
        assert case.detail in rejects[case.name]["detail"]


def test_the_summary_reconciles_and_counts_every_reason(curated):
    root, summary, rejects, warnings, samples = curated
    totals = summary["totals"]
    assert summary["reconciled"] and totals["records_in"] == len(CASES) == totals["written"] + totals["rejected"]
    assert totals["rejected"] == len(rejects) and totals["written"] == len(samples)
    assert totals["warnings"] == len(warnings)
    rejected = [case.expected for case in CASES if case.expected != "written" and ":" not in case.expected]
    assert totals["rejects_by_reason"] == {r: rejected.count(r) for r in sorted(set(rejected))}
    saved = json.loads((root / "out" / "summary.json").read_text(encoding="utf-8"))
    assert saved["totals"] == totals
    assert not (root / "poses" / "EXECUTED").exists()  # the pickle without the opt-in was never loaded


def test_written_samples_mean_what_their_files_say(curated):
    _, _, _, _, samples = curated
    for sample in samples.values():  # never NaN, never a coordinate beyond the margin
        pose = sample.pose.astype(np.float32)
        assert np.isfinite(pose).all() and (pose[..., :2] >= -0.5).all() and (pose[..., :2] <= 1.5).all()
    # The .npz records 25 fps: the 0.4-1.2 s cue is frames 10-30 at 25 fps (not 12-36 at the annotation's 29.97).
    fps25 = samples["npz_fps_wins"].meta
    assert (fps25.fps, fps25.frame_start, fps25.frame_end) == (25.0, 10, 30)
    hd = samples["npz_size_wins"]
    assert (hd.meta.width, hd.meta.height) == (1280, 960)
    assert float(hd.pose[..., :2].max()) <= 1.0  # normalised by the file's 1280 x 960, not the annotation's size
    # Far-out points are missing points; the others are untouched.
    partly = samples["npy_partly_outside"].pose
    nose, shoulder = 0, int(np.flatnonzero(WHOLEBODY_INDICES == 5)[0])
    assert (partly[:, nose] == 0).all() and (partly[:, shoulder] == 0).all() and (partly[:, 1:5, 2] > 0).all()
    # An inf coordinate is a missing point (confidence 0, coordinates 0), not a rejected clip.
    inf = samples["npy_inf_point"].pose
    assert inf[2, 7].tolist() == [0, 0, 0] and (inf[2, 8, 2] > 0)
    # MMPose frame ids 0, 1, 2, 6, 7: frames 3-5 are missing, so 0.24-0.32 s at 25 fps (frames 6-8) starts with the
    # detections listed under frame_id 6.
    gap = samples["json_frame_gap"]
    assert (gap.meta.frame_start, gap.meta.frame_end) == (6, 8)
    expected = keypoints(5)[3][WHOLEBODY_INDICES]
    np.testing.assert_allclose(gap.pose[0, :, 0].astype(np.float32), expected[:, 0] / WIDTH, atol=1e-3)
    whole = samples["json_frame_gap_whole"].pose
    assert len(whole) == 8 and (whole[3:6] == 0).all() and (whole[[0, 1, 2, 6, 7], :, 2] > 0).all()
