"""The extra hand source (SPEC §2, InterWild hands with MMPose bodies): the merge rule and the extra samples a
dataset with ``extra_hands`` gets."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from data_curation.config import PoseSourceConfig
from data_curation.extra_hands import HAND_POINTS, merge_extra_hands
from data_curation.fixtures import write_fixture_datasets
from data_curation.pipeline import build
from slp.config import load_config
from slp.data.shards import iter_samples
from slp.pose.layout import WHOLEBODY_INDICES
from slp.pose.readers import PoseSequence


def _sequence(frames: int, value: float, width: int = 640, height: int = 480) -> PoseSequence:
    kp = np.full((frames, 133, 3), value, dtype=np.float32)
    kp[..., 2] = 0.9
    return PoseSequence(kp, 25.0, width, height, f"v{value}")


def test_merge_takes_detected_extra_hands_and_keeps_the_rest():
    main, hands = _sequence(3, 100.0), _sequence(3, 200.0)
    hands.keypoints[1, 95] = 0.0  # the extra source missed one point in frame 1
    merged = merge_extra_hands(main, hands)
    assert (merged.keypoints[:, :91] == main.keypoints[:, :91]).all()  # body and face untouched
    assert merged.keypoints[0, 95, 0] == 200.0 and merged.keypoints[1, 95, 0] == 100.0  # fallback to the main
    assert (merged.keypoints[2, HAND_POINTS, :2] == 200.0).all()
    assert (main.keypoints[:, HAND_POINTS, 0] == 100.0).all()  # inputs are not modified


def test_merge_rescales_other_frame_sizes_and_refuses_other_lengths():
    merged = merge_extra_hands(_sequence(2, 100.0, 640, 480), _sequence(2, 64.0, 320, 240))
    assert merged.keypoints[0, 100, 0] == pytest.approx(128.0) and merged.keypoints[0, 100, 1] == pytest.approx(128.0)
    with pytest.raises(ValueError, match="same video"):
        merge_extra_hands(_sequence(3, 1.0), _sequence(4, 1.0))


def test_a_dataset_with_extra_hands_gets_a_second_sample_per_clip(tmp_path):
    from data_curation.config import CurateConfig

    cfg = load_config(CurateConfig, write_fixture_datasets(tmp_path / "fx", ("wlasl",)))
    wlasl = cfg.datasets["wlasl"]
    hands_root = tmp_path / "interwild"
    shutil.copytree(wlasl.poses.root, hands_root)
    for path in sorted(hands_root.glob("*.npz")):  # the second estimator's hands: shifted by 7 px
        with np.load(path) as npz:
            arrays = dict(npz)
        arrays["keypoints"][:, HAND_POINTS, 0] += 7.0
        np.savez(path, **arrays)
    removed = sorted(hands_root.glob("*.npz"))[0]
    removed.unlink()  # one clip without extra hands: its extra sample is rejected, the plain one is kept
    cfg.datasets["wlasl"] = dataclasses.replace(wlasl, extra_hands=PoseSourceConfig(root=str(hands_root),
                                                                                     format="npz"))
    cfg = dataclasses.replace(cfg, output=str(tmp_path / "build"))
    summary = build(cfg)
    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "build" / "shards").glob("*.tar")))}
    plain = {k: s for k, s in samples.items() if not k.endswith("_xh")}
    extra = {k[: -len("_xh")]: s for k, s in samples.items() if k.endswith("_xh")}
    assert plain and set(extra) == set(plain) - {k for k in plain if removed.stem in k}
    key, sample = next(iter(extra.items()))
    assert sample.meta.extra == {"extra_hands": True} and sample.meta.source_id.endswith("#xh")
    hands = [i for i, src in enumerate(WHOLEBODY_INDICES) if 91 <= src < 133]
    seen = plain[key].pose[:, hands, 2] > 0
    shift = (sample.pose[:, hands, 0].astype(np.float32) - plain[key].pose[:, hands, 0].astype(np.float32))[seen]
    np.testing.assert_allclose(shift * sample.meta.width, 7.0, atol=0.5)  # float16 shard precision
    body = [i for i, src in enumerate(WHOLEBODY_INDICES) if src < 91]
    assert (sample.pose[:, body] == plain[key].pose[:, body]).all()
    assert summary["totals"]["rejects_by_reason"].get("missing_extra_hand_file") == 1
    assert summary["reconciled"]
