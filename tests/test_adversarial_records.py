"""Records and samples that break the contract: sample metadata outside the schema (rejected by the one validator
the writer and the reader share), and sample keys that collide across shards (made unique, the same way whatever
the worker count, and recorded)."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_curation.pipeline import build
from slp.data.schema import InvalidSample, Sample, SampleMeta, validate_sample
from tests.test_curation_pipeline import _record, build_output_files, toy_config, write_npy_pose

GOOD = SampleMeta(dataset="wlasl", split="train", sign_language="ASL", text_language="en", source_id="05237",
                  fps=25.0, width=640, height=480, signer="7", frame_start=3, frame_end=15,
                  text="This word is book.", gloss="book", label=4, paired=True)

BAD_META = {
    "label_text": ({"label": "abc"}, "label 'abc' is not an integer >= -1"),
    "label_below_minus_one": ({"label": -2}, "label -2 is not an integer >= -1"),
    "label_bool": ({"label": True}, "label True is not an integer >= -1"),
    "fps_text": ({"fps": "fast"}, "fps 'fast' is not a finite positive number"),
    "fps_nan": ({"fps": float("nan")}, "fps nan is not a finite positive number"),
    "fps_zero": ({"fps": 0}, "fps 0 is not a finite positive number"),
    "width_negative": ({"width": -640}, "width -640 is not a positive integer"),
    "height_float": ({"height": 480.0}, "height 480.0 is not a positive integer"),
    "split_unknown": ({"split": "val"}, "split 'val' is not one of ('train', 'dev', 'test')"),
    "split_not_text": ({"split": ["train"]}, "split ['train'] is not one of ('train', 'dev', 'test')"),
    "sign_language_unknown": ({"sign_language": "DGS"}, "sign_language 'DGS' is not one of ('ASL', 'BSL', 'CSL', "
                                                        "'GSL')"),
    "text_language_unknown": ({"text_language": "fr"}, "text_language 'fr' is not '' or one of ('en', 'de', 'zh')"),
    "frame_start_negative": ({"frame_start": -1}, "frame_start -1 is not an integer >= 0"),
    "frame_range_reversed": ({"frame_end": 2}, "frame_end 2 is not -1 or an integer > frame_start (3)"),
    "paired_without_text": ({"text": "  "}, "text '  ' is not a non-empty text (the sample is paired)"),
    "paired_without_language": ({"text_language": ""}, "text_language '' is not a language (the sample is paired)"),
    "paired_not_bool": ({"paired": "yes"}, "paired 'yes' is not true or false"),
    "gloss_numbers": ({"gloss": [1, 2]}, "gloss [1, 2] is not a string or a list of strings"),
    "source_id_number": ({"source_id": 5237}, "source_id 5237 is not a string"),
    "extra_list": ({"extra": []}, "extra [] is not a mapping"),
}


@pytest.mark.parametrize("name", sorted(BAD_META))
def test_metadata_outside_the_schema_is_refused_with_its_field(name):
    changes, message = BAD_META[name]
    GOOD.validate()
    meta = dataclasses.replace(GOOD, **changes)
    with pytest.raises(InvalidSample) as error:
        meta.validate()
    assert str(error.value) == message
    # The reader's path: the same check on what a shard's JSON member decodes to.
    with pytest.raises(InvalidSample, match="^" + message.split(" ")[0]):
        SampleMeta.from_json(meta.to_json()).validate()


def test_a_sample_is_checked_whole():
    pose = np.zeros((12, 79, 3), np.float16)
    validate_sample(Sample("wlasl_train_05237", pose, GOOD))
    for key, pose_, message in [("wlasl.train", pose, "key 'wlasl.train' is not made of [A-Za-z0-9_-]"),
                                ("k", pose[:5], "frame range [3, 15) does not span the pose's 5 frames"),
                                ("k", np.full((12, 79, 3), np.inf, np.float16), "pose has 2844 non-finite values")]:
        with pytest.raises(InvalidSample, match=re.escape(message)):
            validate_sample(Sample(key, pose_, GOOD))


def test_the_writer_refuses_a_sample_outside_the_schema(tmp_path):
    write_npy_pose(tmp_path / "poses" / "clip0.npy", frames=12, seed=0)
    items = [("toy", _record(0, key="good")),
             ("toy", _record(1, key="dgs", sign_language="DGS", pose_path="clip0.npy")),
             ("toy", _record(2, key="fr", text_language="fr", pose_path="clip0.npy"))]
    summary = build(toy_config(tmp_path, tmp_path / "out"), items)
    rejects = {r["key"]: (r["reason"], r["detail"]) for r in pq.read_table(tmp_path / "out" / "rejects.parquet")
               .to_pylist()}
    assert rejects == {"dgs": ("invalid_sample", "sign_language 'DGS' is not one of ('ASL', 'BSL', 'CSL', 'GSL')"),
                       "fr": ("invalid_sample", "text_language 'fr' is not '' or one of ('en', 'de', 'zh')")}
    assert summary["reconciled"] and summary["totals"]["written"] == 1


def test_keys_that_collide_across_shards_are_made_unique_the_same_way_on_any_worker_count(tmp_path):
    write_npy_pose(tmp_path / "poses" / "clip0.npy", frames=12, seed=0)
    write_npy_pose(tmp_path / "poses" / "clip1.npy", frames=14, seed=1)
    # "clip.1" and "clip-1" both make toy_train_clip-1; "toy_train_clip-1-<hash>" is already someone's key.
    suffix = hashlib.sha1(b"toy/train/clip-1").hexdigest()[:8]
    items = [("toy", _record(0, source_id="clip.1", key="", pose_path="clip0.npy")),
             ("toy", _record(1, source_id=f"clip-1-{suffix}", key="", pose_path="clip1.npy")),
             ("toy", _record(2, source_id="clip-1", key="", pose_path="clip1.npy"))]
    one = build(toy_config(tmp_path, tmp_path / "one", records_per_shard=1, workers=1), items)
    manifest = pq.read_table(tmp_path / "one" / "manifest.parquet").to_pylist()
    assert [(row["source_id"], row["key"], row["shard"]) for row in manifest] == [
        ("clip.1", "toy_train_clip-1", "sl15m-000000.tar"),
        (f"clip-1-{suffix}", f"toy_train_clip-1-{suffix}", "sl15m-000001.tar"),
        ("clip-1", f"toy_train_clip-1-{suffix}-2", "sl15m-000002.tar")]
    warnings = pq.read_table(tmp_path / "one" / "warnings.parquet").to_pylist()
    assert [(w["source_id"], w["reason"], w["detail"]) for w in warnings] == [
        ("clip-1", "key_collision", f"key 'toy_train_clip-1' was taken by an earlier record; toy/train/clip-1 is "
                                    f"written as 'toy_train_clip-1-{suffix}-2'")]
    assert one["totals"]["warnings_by_reason"] == {"key_collision": 1} and one["reconciled"]
    two = build(toy_config(tmp_path, tmp_path / "two", records_per_shard=1, workers=2), items)
    assert two["totals"] == one["totals"]
    assert build_output_files(tmp_path / "two") == build_output_files(tmp_path / "one")
    again = build(toy_config(tmp_path, tmp_path / "one", records_per_shard=1, workers=1), items)
    assert again["resumed_jobs"] == again["jobs"] == 3
    assert build_output_files(tmp_path / "one") == build_output_files(tmp_path / "two")
