"""The sentence-level adapters (Phoenix14, Phoenix14-T, CSL-Daily, How2Sign, BOBSL): their fixtures give the
expected records and rejects, a build of all five writes the good clips and rejects the bad ones with their
reasons, and — where ``../shared/realdata`` is present — the real annotation files give the official counts
and survive their documented quirks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_curation.adapters import get_adapter
from data_curation.adapters.bobsl import Cue, CueProblem, WebVTTError, parse_webvtt, read_episode_list
from data_curation.adapters.how2sign import repair_double_encoded_utf8
from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
from data_curation.fixtures import write_fixture_datasets
from data_curation.pipeline import build
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import load_config
from slp.data.shards import iter_samples

SENTENCE_DATASETS = ("phoenix14", "phoenix14t", "csl_daily", "how2sign", "bobsl")


@pytest.fixture(scope="module")
def fixture_config(tmp_path_factory) -> CurateConfig:
    """The five fixtures written once, with the curate config that builds them together."""
    root = tmp_path_factory.mktemp("sentence_fixtures")
    return load_config(CurateConfig, write_fixture_datasets(root, SENTENCE_DATASETS))


def adapter_output(dataset: DatasetConfig, **changes) -> tuple[list[CurationRecord], dict[tuple[str, str], str],
                                                              list[AnnotationReject]]:
    """(records, {(split, source_id): reason}, rejects) of an adapter over ``dataset`` with fields replaced."""
    config = dataclasses.replace(dataset, **changes)
    items = list(get_adapter(config.adapter)(config).records())
    records = [item for item in items if isinstance(item, CurationRecord)]
    rejects = [item for item in items if isinstance(item, AnnotationReject)]
    assert len(records) + len(rejects) == len(items)
    return records, {(r.split, r.source_id): r.reason for r in rejects}, rejects


# ----------------------------------------------------------------------------------------------- fixture: adapters


def test_phoenix14_fixture_records(fixture_config):
    records, reasons, rejects = adapter_output(fixture_config.datasets["phoenix14"])
    assert [(r.split, r.source_id, r.signer, r.gloss) for r in records] == [
        ("train", "01May_2011_Sunday_tagesschau_default-0", "Signer01", ["__ON__", "MORGEN", "REGEN", "loc-NORD",
                                                                         "__OFF__"]),
        ("train", "01May_2011_Sunday_tagesschau_default-1", "Signer02", ["SUED", "SONNE", "WARM", "__EMOTION__"]),
        ("train", "02May_2011_Monday_heute_default-3", "Signer01", ["WIND", "STARK", "KUESTE"]),
        ("train", "02May_2011_Monday_heute_default-4", "Signer03", ["NACHT", "KALT"]),
        ("train", "02May_2011_Monday_heute_default-5", "Signer03", ["FREITAG", "NEBEL"]),
        ("dev", "04May_2011_Wednesday_heute_default-0", "Signer05", ["__ON__", "HEUTE", "WOLKE", "VIEL"]),
        ("dev", "04May_2011_Wednesday_heute_default-1", "Signer02", ["TEMPERATUR", "STEIGEN", "__OFF__"]),
        ("test", "05May_2011_Thursday_tagesschau_default-2", "Signer01", ["__ON__", "GEWITTER", "MOEGLICH"]),
        ("test", "05May_2011_Thursday_tagesschau_default-3", "Signer05", ["WOCHENENDE", "SONNE", "__OFF__"]),
    ]
    first = records[0]
    # Unpaired (gloss only): no text, no text language; the pickle collection is keyed <split>/<id>.
    assert (first.paired, first.text, first.text_language, first.sign_language, first.label) == (False, "", "", "GSL",
                                                                                                  -1)
    assert (first.pose_path, first.pose_key) == ("", "train/01May_2011_Sunday_tagesschau_default-0")
    assert first.key == "phoenix14_train_01May_2011_Sunday_tagesschau_default-0"
    assert reasons == {("train", "03May_2011_Tuesday_tagesschau_default-7"): "malformed_row",
                       ("train", "01May_2011_Sunday_tagesschau_default-0"): "duplicate_id",
                       ("train", "03May_2011_Tuesday_tagesschau_default-8"): "empty_gloss"}
    duplicate = next(r for r in rejects if r.reason == "duplicate_id")
    assert duplicate.detail.endswith("train.corpus.csv:8: 01May_2011_Sunday_tagesschau_default-0 already at "
                                     f"{Path(fixture_config.datasets['phoenix14'].annotation_root)}/train.corpus.csv:2")


def test_phoenix14t_fixture_records(fixture_config):
    dataset = fixture_config.datasets["phoenix14t"]
    records, reasons, _ = adapter_output(dataset)
    assert [(r.split, r.source_id, r.signer, r.text, r.gloss) for r in records] == [
        ("train", "06June_2011_Monday_tagesschau-101", "Signer01", "morgen regnet es im norden",
         ["MORGEN", "REGEN", "NORD"]),
        ("train", "06June_2011_Monday_tagesschau-102", "Signer04", "im süden scheint die sonne bei großer wärme",
         ["SUED", "SONNE", "WARM"]),
        ("train", "07June_2011_Tuesday_heute-104", "Signer02", "in der nacht gibt es frost", ["NACHT", "FROST"]),
        ("dev", "08June_2011_Wednesday_tagesschau-201", "Signer03", 'das hoch "erika" bringt viel sonne',
         ["HOCH", "KOMMEN", "SONNE"]),
        ("test", "09June_2011_Thursday_heute-301", "Signer05", "auf den bergen weht starker wind",
         ["WIND", "STARK", "BERG"]),
        ("test", "09June_2011_Thursday_heute-302", "Signer01", "am samstag drohen gewitter", ["SAMSTAG", "GEWITTER"]),
    ]
    assert {(r.paired, r.text_language, r.sign_language) for r in records} == {(True, "de", "GSL")}
    assert records[3].pose_path == "dev/08June_2011_Wednesday_tagesschau-201.pose" and records[3].pose_key is None
    assert reasons == {("train", "06June_2011_Monday_tagesschau-103"): "empty_text",
                       ("train", "07June_2011_Tuesday_heute-105"): "malformed_row"}

    # The train-complex file: markers kept in the glosses, the tokenised final " ." removed from the text.
    records, reasons, _ = adapter_output(dataset, options={"train_annotation": "complex"})
    train = [(r.source_id, r.text, r.gloss) for r in records if r.split == "train"]
    assert train == [
        ("06June_2011_Monday_tagesschau-101", "morgen regnet es im norden",
         ["__ON__", "MORGEN", "REGEN", "loc-NORD", "__OFF__"]),
        ("06June_2011_Monday_tagesschau-102", "im süden scheint die sonne bei großer wärme",
         ["__ON__", "SUED", "SONNE", "WARM-PLUSPLUS", "__PU__"]),
        ("07June_2011_Tuesday_heute-104", "in der nacht gibt es frost", ["__ON__", "NACHT", "FROST", "__OFF__"]),
    ]
    assert reasons == {("train", "06June_2011_Monday_tagesschau-103"): "empty_text"}
    with pytest.raises(UserError, match="train_annotation='fancy'"):
        adapter_output(dataset, options={"train_annotation": "fancy"})


def test_csl_daily_fixture_records(fixture_config):
    dataset = fixture_config.datasets["csl_daily"]
    records, reasons, rejects = adapter_output(dataset)
    assert [(r.split, r.source_id, r.signer, r.text, r.gloss) for r in records] == [
        ("train", "S000000_P0000_T00", "P0000", "你好，朋友！", ["你", "好", "朋友"]),
        ("test", "S000000_P0001_T00", "P0001", "你好，朋友！", ["你", "好", "朋友"]),
        ("dev", "S000001_P0000_T00", "P0000", "今天天气很好。", ["今天", "天气", "好"]),
        ("train", "S000002_P0002_T00", "P0002", "我今年8岁。", ["我", "年龄", "8"]),
        ("train", "S000005_P0002_T00", "P0002", "明天见。", ["明天", "见"]),
        ("train", "S000006_P0004_T00", "P0004", "他喜欢喝茶。", ["他", "喜欢", "喝", "茶"]),
    ]
    assert {(r.paired, r.text_language, r.sign_language) for r in records} == {(True, "zh", "CSL")}
    assert records[0].pose_path == "S000000_P0000_T00.npz"
    # The label row without a split row is outside every split; the split row without a label row comes last.
    assert reasons == {("unsplit", "S000003_P0001_T00"): "no_split_entry",
                       ("train", "S000004_P0003_T00"): "empty_text",
                       ("train", "S000009_P0004_T00"): "no_label_row"}
    assert rejects[-1].source_id == "S000009_P0004_T00" and "split_1.txt:9" in rejects[-1].detail
    # The word column joins to the same sentences.
    words, _, _ = adapter_output(dataset, options={"text_column": "word"})
    assert [r.text for r in words] == [r.text for r in records]


def test_how2sign_fixture_records(fixture_config):
    dataset = fixture_config.datasets["how2sign"]
    records, reasons, _ = adapter_output(dataset)
    assert [(r.split, r.source_id, r.pose_path, r.time_start, r.time_end, r.text) for r in records] == [
        ("train", "-fx3Qk9Lm2A_0-1-rgb_front", "-fx3Qk9Lm2A-1-rgb_front.json", 0.5, 2.1,
         "Today I'll show you how to fold a paper boat."),
        ("train", "-fx3Qk9Lm2A_1-1-rgb_front", "-fx3Qk9Lm2A-1-rgb_front.json", 1.9, 3.4,
         'Fold the corner down, then say "done".'),
        ("train", "-fx3Qk9Lm2A_2-1-rgb_front", "-fx3Qk9Lm2A-1-rgb_front.json", 3.5, 5.2,
         "It\u2019s easier than it looks."),
        ("train", "-fx3Qk9Lm2A_4-1-rgb_front", "-fx3Qk9Lm2A-1-rgb_front.json", 5.5, 9.0, "Let it float in the sink."),
        ("train", "-fx3Qk9Lm2A_6-1-rgb_front", "-fx3Qk9Lm2A-1-rgb_front.json", 0.2, 0.3, "Ready."),
        ("dev", "_bT7rW0pZ1c_0-3-rgb_front", "_bT7rW0pZ1c-3-rgb_front.json", 0.0, 2.5, "Keep your wrist loose."),
        ("dev", "Kp4sD9tR2fQ_0-1-rgb_front", "Kp4sD9tR2fQ-1-rgb_front.json", 1.0, 3.0, "Start with a clean brush."),
        ("test", "Zq8uN2vXy4E_0-2-rgb_front", "Zq8uN2vXy4E-2-rgb_front.json", 0.4, 1.9,
         "Don\u2019t rush the first coat."),
        ("test", "Zq8uN2vXy4E_1-2-rgb_front", "Zq8uN2vXy4E-2-rgb_front.json", 2.0, 3.96, "Let it dry overnight."),
    ]
    assert {(r.paired, r.text_language, r.sign_language, r.signer) for r in records} == {(True, "en", "ASL", "")}
    assert reasons == {("train", "-fx3Qk9Lm2A_3-1-rgb_front"): "reversed_cue",
                       ("train", "-fx3Qk9Lm2A_5-1-rgb_front"): "bad_time",
                       ("train", "-fx3Qk9Lm2A_7-1-rgb_front"): "malformed_row",
                       ("dev", "_bT7rW0pZ1c_1-3-rgb_front"): "empty_text"}
    # One pose file per sentence clip: named by SENTENCE_NAME, whole sequence, times neither used nor checked.
    clips, reasons, _ = adapter_output(dataset, options={"pose_layout": "clip"})
    assert [(r.source_id, r.pose_path, r.time_start, r.time_end) for r in clips[2:5]] == [
        ("-fx3Qk9Lm2A_2-1-rgb_front", "-fx3Qk9Lm2A_2-1-rgb_front.json", None, None),
        ("-fx3Qk9Lm2A_3-1-rgb_front", "-fx3Qk9Lm2A_3-1-rgb_front.json", None, None),
        ("-fx3Qk9Lm2A_4-1-rgb_front", "-fx3Qk9Lm2A_4-1-rgb_front.json", None, None),
    ]
    assert sorted(reasons.values()) == ["empty_text", "malformed_row"]


def test_bobsl_fixture_records(fixture_config):
    records, reasons, _ = adapter_output(fixture_config.datasets["bobsl"])
    farm, quiz, garden = "6001234567890123457", "6087654321098765433", "6111222333444555667"
    assert [(r.split, r.source_id, r.pose_path, r.time_start, r.time_end, r.text) for r in records] == [
        ("train", f"{farm}_0000", f"{farm}.npy", 1.0, 3.5, "Good evening and welcome."),
        ("train", f"{farm}_0001", f"{farm}.npy", 3.2, 6.0, "Tonight we visit a farm & a mill."),  # overlaps: kept
        ("train", f"{farm}_0004", f"{farm}.npy", 7.5, 9.0, "The farmer feeds the goats."),  # out of order: kept
        ("train", f"{farm}_0006", f"{farm}.npy", 12.5, 14.0, "The miller grinds the wheat."),
        ("train", f"{farm}_0008", f"{farm}.npy", 19.0, 25.0, "This goes on after the programme ends."),
        ("train", f"{farm}_0009", f"{farm}.npy", 15.0, 15.08, "Hi."),
        ("train", f"{quiz}_0000", f"{quiz}.npy", 1.0, 4.0, "Welcome to the quiz."),
        ("train", f"{quiz}_0001", f"{quiz}.npy", 4.5, 8.0, "First question: what is the capital of Wales?"),
        ("dev", "5990001112223334445_0000", "5990001112223334445.npy", 0.5, 2.0, "The rain stops at noon."),
        ("dev", "5990001112223334445_0001", "5990001112223334445.npy", 2.0, 4.0, "Then the sun comes out."),
        ("test", f"{garden}_0000", f"{garden}.npy", 1.2, 4.8, "Plant the bulbs before the frost."),
    ]
    assert all((r.paired, r.text_language, r.sign_language, r.signer, r.gloss) == (True, "en", "BSL", "", [])
               for r in records)
    assert reasons == {("train", f"{farm}_0002"): "zero_length_cue", ("train", f"{farm}_0003"): "reversed_cue",
                       ("train", f"{farm}_0005"): "empty_text", ("train", f"{farm}_0007"): "malformed_cue",
                       ("dev", "6333444555666777889"): "not_webvtt",
                       ("test", "6222333444555666771"): "missing_subtitle_file",
                       ("test", quiz): "duplicate_episode"}


def test_webvtt_parser_rules():
    text = ("\ufeffWEBVTT - a title\r\n\r\nSTYLE\r\n::cue { color: lime }\r\n\r\n"
            "NOTE a comment\r\nover two lines\r\n\r\nintro\r\n01:02:03.004 --> 01:02:05.000 line:90% align:end\r\n"
            "<v Anna>Hello</v>   &lt;there&gt;\r\n"
            "<00:00:01.500>again\r\n\r\njust some words\r\nwithout timing\r\n\r\n00:07.000 -> 00:08.000\r\nBad arrow.")
    items = parse_webvtt(text, "x.vtt")
    assert items[0] == Cue(0, 10, 3723.004, 3725.0, "Hello <there> again")
    assert [(type(i), i.index, i.line) for i in items[1:]] == [(CueProblem, 1, 14), (CueProblem, 2, 17)]
    assert "x.vtt:14: block without a timing line" in items[1].detail
    # A cue right after the header (no blank line) is invalid WebVTT: reported, not lost.
    assert [type(i) for i in parse_webvtt("WEBVTT\n00:01.000 --> 00:02.000\nHi\n\n00:03.000 --> 00:04.000\nYo")] == [
        CueProblem, Cue]
    with pytest.raises(WebVTTError, match="y.srt: first line '1' is not 'WEBVTT'"):
        parse_webvtt("1\n00:00:01,000 --> 00:00:02,000\nHi", "y.srt")


def test_mojibake_repair_is_exact_and_leaves_correct_text_alone():
    assert repair_double_encoded_utf8("non-verbal\u00e2\u0080\u0099s") == "non-verbal\u2019s"
    assert repair_double_encoded_utf8("Don\u00e2\u20ac\u2122t") == "Don\u2019t"  # Windows-1252 form
    assert repair_double_encoded_utf8("caf\u00c3\u00a9 and \u00c3\u00bcber") == "café and über"
    for correct in ("café", "naïve façade", "€5 for a crêpe", "Âge", "â\u0080 is cut short"):
        assert repair_double_encoded_utf8(correct) == correct
    # An overlong encoding has the right shape but is not valid UTF-8: left as it is.
    assert repair_double_encoded_utf8("\u00c0\u00af") == "\u00c0\u00af"


def test_split_files_missing_or_malformed(fixture_config, tmp_path):
    dataset = fixture_config.datasets["phoenix14"]
    root = tmp_path / "phoenix14"
    root.mkdir()
    for split in ("train", "dev"):
        (root / f"{split}.corpus.csv").write_bytes((Path(dataset.annotation_root) / f"{split}.corpus.csv").read_bytes())
    # A split the config does not select may lack its file; a selected one may not.
    records, _, _ = adapter_output(dataset, annotation_root=str(root), splits=["train", "dev"])
    assert {r.split for r in records} == {"train", "dev"}
    records, _, _ = adapter_output(dataset, annotation_root=str(root), exclude_splits=["test"])
    assert len(records) == 7
    with pytest.raises(UserError, match=r"test\.corpus\.csv: no such file"):
        adapter_output(dataset, annotation_root=str(root))
    # A CSV-quoted sentence whose quote is not closed at the end of its line: that row is rejected, and the rows
    # after it are read as they are (read as one CSV stream, it would swallow the lines up to the next quote).
    header = "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"
    rows = [f"v\tv-1-rgb_front\tv_{i}\tv_{i}-1-rgb_front\t{i}.0\t{i}.5\t{text}" for i, text in enumerate(
        ['"Fine."', '"Never closed.', 'Swallowed up to the next "quote".', "After it."])]
    (root / "how2sign_realigned_val.csv").write_bytes("\r\n".join([header, *rows, ""]).encode("utf-8"))
    records, reasons, rejects = adapter_output(fixture_config.datasets["how2sign"], annotation_root=str(root),
                                               splits=["dev"])
    assert [(r.source_id, r.text) for r in records] == [("v_0-1-rgb_front", "Fine."), (
        "v_2-1-rgb_front", 'Swallowed up to the next "quote".'), ("v_3-1-rgb_front", "After it.")]
    assert reasons == {("dev", "v_1-1-rgb_front"): "malformed_row"}
    assert rejects[0].detail.endswith("how2sign_realigned_val.csv:3: unclosed quote ('v\\tv-1-rgb_front\\tv_1\\t"
                                      "v_1-1-rgb_front\\t1.0\\t1.5\\t\"Never closed.')")

    (root / "dev.corpus.csv").write_text("id,folder,signer,annotation\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"dev\.corpus\.csv: header 'id,folder,signer,annotation' lacks"):
        adapter_output(dataset, annotation_root=str(root), splits=["train", "dev"])


# ------------------------------------------------------------------------------------------------ fixture: build


def test_build_of_the_five_fixtures(fixture_config, tmp_path):
    cfg = dataclasses.replace(fixture_config, output=str(tmp_path / "build"))
    summary = build(cfg)
    assert summary["reconciled"]
    by_dataset = summary["by_dataset"]
    written = {name: {split: c["written"] for split, c in splits.items() if c["written"]}
               for name, splits in by_dataset.items()}
    assert written == {"phoenix14": {"train": 3, "dev": 2, "test": 2}, "phoenix14t": {"train": 2, "dev": 1, "test": 2},
                       "csl_daily": {"train": 2, "dev": 1, "test": 1}, "how2sign": {"train": 3, "dev": 1, "test": 2},
                       "bobsl": {"train": 6, "test": 1}}
    assert by_dataset["phoenix14"]["train"]["unpaired"] == 3 and by_dataset["phoenix14t"]["train"]["paired"] == 2
    # A row missing from the split list has no split to go to: its reject is logged all the same.
    assert by_dataset["csl_daily"]["unsplit"]["rejected"] == 1

    rejects = pq.read_table(tmp_path / "build" / "rejects.parquet").to_pylist()
    assert {(r["dataset"], r["source_id"]): r["reason"] for r in rejects} == {
        ("phoenix14", "02May_2011_Monday_heute_default-4"): "too_few_frames",
        ("phoenix14", "02May_2011_Monday_heute_default-5"): "missing_pose_file",  # not in the pickle
        ("phoenix14", "03May_2011_Tuesday_tagesschau_default-7"): "malformed_row",
        ("phoenix14", "01May_2011_Sunday_tagesschau_default-0"): "duplicate_id",
        ("phoenix14", "03May_2011_Tuesday_tagesschau_default-8"): "empty_gloss",
        ("phoenix14t", "06June_2011_Monday_tagesschau-103"): "empty_text",
        ("phoenix14t", "07June_2011_Tuesday_heute-104"): "missing_pose_file",
        ("phoenix14t", "07June_2011_Tuesday_heute-105"): "malformed_row",
        ("csl_daily", "S000002_P0002_T00"): "too_few_frames",
        ("csl_daily", "S000004_P0003_T00"): "empty_text",
        ("csl_daily", "S000005_P0002_T00"): "missing_pose_file",
        ("csl_daily", "S000009_P0004_T00"): "no_label_row",
        ("csl_daily", "S000003_P0001_T00"): "no_split_entry",
        ("how2sign", "-fx3Qk9Lm2A_3-1-rgb_front"): "reversed_cue",
        ("how2sign", "-fx3Qk9Lm2A_4-1-rgb_front"): "frame_range_outside",
        ("how2sign", "-fx3Qk9Lm2A_5-1-rgb_front"): "bad_time",
        ("how2sign", "-fx3Qk9Lm2A_6-1-rgb_front"): "too_few_frames",
        ("how2sign", "-fx3Qk9Lm2A_7-1-rgb_front"): "malformed_row",
        ("how2sign", "_bT7rW0pZ1c_1-3-rgb_front"): "empty_text",
        ("how2sign", "Kp4sD9tR2fQ_0-1-rgb_front"): "missing_pose_file",
        ("bobsl", "6001234567890123457_0002"): "zero_length_cue",
        ("bobsl", "6001234567890123457_0003"): "reversed_cue",
        ("bobsl", "6001234567890123457_0005"): "empty_text",
        ("bobsl", "6001234567890123457_0007"): "malformed_cue",
        ("bobsl", "6001234567890123457_0008"): "frame_range_outside",
        ("bobsl", "6001234567890123457_0009"): "too_few_frames",
        ("bobsl", "5990001112223334445_0000"): "missing_pose_file",
        ("bobsl", "5990001112223334445_0001"): "missing_pose_file",
        ("bobsl", "6333444555666777889"): "not_webvtt",
        ("bobsl", "6222333444555666771"): "missing_subtitle_file",
        ("bobsl", "6087654321098765433"): "duplicate_episode",
    }
    assert len(rejects) == summary["totals"]["rejected"] == 31

    samples = {s.key: s for s in iter_samples(sorted((tmp_path / "build" / "shards").glob("*.tar")))}
    assert len(samples) == summary["totals"]["written"] == 29
    # Times become frames with the pose's fps: 0.5-2.1 s at 24 fps, 3.2-6.0 s and 12.5-14.0 s at 25 fps.
    cut = {key: (samples[key].meta.frame_start, samples[key].meta.frame_end, len(samples[key].pose)) for key in (
        "how2sign_train_-fx3Qk9Lm2A_0-1-rgb_front", "bobsl_train_6001234567890123457_0001",
        "bobsl_train_6001234567890123457_0006")}
    assert cut == {"how2sign_train_-fx3Qk9Lm2A_0-1-rgb_front": (12, 50, 38),
                   "bobsl_train_6001234567890123457_0001": (80, 150, 70),
                   "bobsl_train_6001234567890123457_0006": (313, 350, 37)}  # 12.5 s × 25 = 312.5: half up
    phoenix = samples["phoenix14_dev_04May_2011_Wednesday_heute_default-0"].meta
    assert (phoenix.paired, phoenix.text, phoenix.gloss, phoenix.signer, phoenix.frame_end, phoenix.width) == (
        False, "", ["__ON__", "HEUTE", "WOLKE", "VIEL"], "Signer05", 22, 210)
    csl = samples["csl_daily_dev_S000001_P0000_T00"].meta
    assert (csl.text, csl.text_language, csl.fps, csl.width) == ("今天天气很好。", "zh", 30.0, 512)
    assert samples["how2sign_test_Zq8uN2vXy4E_0-2-rgb_front"].meta.text == "Don\u2019t rush the first coat."


@pytest.mark.parametrize("adapter, option", [("wlasl", "clips"), ("msasl", "clips"), ("msasl", "cut"),
                                             ("csl_daily", "text_column"), ("how2sign", "pose_layout"),
                                             ("phoenix14t", "train_annotation")])
def test_an_option_outside_its_choices_is_an_error_naming_the_config(tmp_path, adapter, option):
    config = DatasetConfig(adapter=adapter, annotation_root=str(tmp_path), options={option: "nonsense"},
                           poses=PoseSourceConfig(root=str(tmp_path)))
    with pytest.raises(UserError, match=f"mine: option {option}='nonsense'; expected one of"):
        get_adapter(adapter)(config, "mine")


# ---------------------------------------------------------------------------------------------------- real data


def real_dataset(adapter: str, root: Path, splits=("train", "dev", "test"), **options) -> DatasetConfig:
    """A config over real annotation files (no poses: adapters do not read them)."""
    return DatasetConfig(adapter=adapter, annotation_root=str(root), poses=PoseSourceConfig(root=str(root / "none")),
                         splits=list(splits), options=options)


def count(items: list, split: str) -> int:
    return sum(1 for item in items if item.split == split)


def test_real_phoenix14(realdata):
    records, reasons, _ = adapter_output(real_dataset("phoenix14", realdata / "phoenix14"))
    assert not reasons
    assert (count(records, "train"), count(records, "dev"), count(records, "test")) == (5672, 540, 629)
    by_id = {(r.split, r.source_id): r for r in records}
    # Trailing and leading spaces give no empty gloss.
    assert by_id[("dev", "03September_2010_Friday_tagesschau_default-2")].gloss[-2:] == ["IX", "GLEICH"]
    assert by_id[("dev", "24January_2011_Monday_heute_default-12")].gloss[:2] == ["MITTWOCH", "SONNE"]
    assert all(gloss for r in records for gloss in r.gloss)
    assert "__EMOTION__" in by_id[("train", "13April_2011_Wednesday_tagesschau_default-14")].gloss  # markers kept
    # Dev / test glosses and signers equal the official STM ground truth (markers already absent there).
    for split in ("dev", "test"):
        lines = (realdata / "phoenix14" / f"phoenix2014-groundtruth-{split}.stm").read_text().splitlines()
        stm = {line.split()[0]: (line.split()[2], line.split()[5:]) for line in lines}
        assert {r.source_id: (r.signer.lower(), r.gloss) for r in records if r.split == split} == stm


def test_real_phoenix14t(realdata):
    root = realdata / "phoenix14t"
    records, reasons, _ = adapter_output(real_dataset("phoenix14t", root, ["train", "test"],
                                                      train_annotation="complex"))
    assert not reasons and (count(records, "train"), count(records, "test")) == (7096, 642)
    assert not any(r.text.endswith(" .") for r in records)
    by_id = {r.source_id: r for r in records}
    first = by_id["11August_2010_Wednesday_tagesschau-1"]
    assert first.text == "und nun die wettervorhersage für morgen donnerstag den zwölften august"
    assert (first.gloss[0], first.gloss[-1], first.signer) == ("__ON__", "__OFF__", "Signer08")
    # Test translations and glosses equal the dataset authors' line-aligned NSLT files (which add " .").
    aux = root / "nslt_aux"
    names = [line.rstrip("/").rsplit("/", 1)[1] for line in (aux / "phoenix2014T.test.sign").read_text().splitlines()]
    german = (aux / "phoenix2014T.test.de").read_text(encoding="utf-8").splitlines()
    glosses = (aux / "phoenix2014T.test.gloss").read_text(encoding="utf-8").splitlines()
    assert [(by_id[n].text + " .", " ".join(by_id[n].gloss)) for n in names] == list(zip(german, glosses))
    assert "nordhälfte" in by_id["25October_2010_Monday_tagesschau-24"].text
    # The plain train file is absent from this copy: fine when train is not selected, an error when it is.
    records, _, _ = adapter_output(real_dataset("phoenix14t", root, ["test"]))
    assert len(records) == 642
    with pytest.raises(UserError, match=r"PHOENIX-2014-T\.train\.corpus\.csv"):
        adapter_output(real_dataset("phoenix14t", root, ["train", "test"]))


def test_real_csl_daily_split_and_join(realdata):
    root = realdata / "csl_daily"
    records, reasons, rejects = adapter_output(real_dataset("csl_daily", root, label_file="video_map.HEAD60.txt"))
    # Every split row is accounted for once: joined with one of the 60 label rows, or rejected as no_label_row.
    per_split = {split: count(records, split) + sum(1 for r in rejects if r.split == split)
                 for split in ("train", "dev", "test")}
    assert per_split == {"train": 18401, "dev": 1077, "test": 1176}
    assert (len(records), count(records, "train"), count(records, "dev"), count(records, "test")) == (59, 56, 2, 1)
    assert reasons[("unsplit", "S000007_P0003_T00")] == "no_split_entry"
    assert sorted(set(reasons.values())) == ["no_label_row", "no_split_entry"]
    first = records[0]
    assert (first.source_id, first.split, first.signer, first.text, first.gloss) == (
        "S000000_P0000_T00", "train", "P0000", "你们好！", ["你们", "好"])
    # Joined dev / test records carry the glosses of the official STM ground truth ("他 今天 年龄 4").
    stm = {}
    for split in ("dev", "test"):
        for line in (root / f"CSL-Daily-groundtruth-{split}.stm").read_text(encoding="utf-8").splitlines():
            stm[line.split()[0]] = line.split()[5:]
    joined = {r.source_id: r.gloss for r in records if r.split != "train"}
    assert joined == {name: stm[name] for name in ("S000020_P0000_T00", "S000020_P0004_T00", "S000020_P0008_T00")}


def test_real_how2sign_val(realdata):
    records, reasons, _ = adapter_output(real_dataset("how2sign", realdata / "how2sign", ["dev"]))
    assert not reasons and len(records) == count(records, "dev") == 1741
    by_id = {r.source_id: r for r in records}
    first = records[0]
    assert (first.source_id, first.pose_path, first.time_start, first.time_end) == (
        "-d5dN54tH2E_0-1-rgb_front", "-d5dN54tH2E-1-rgb_front.pose", 12.97, 19.52)
    assert sum(r.source_id[0] in "-_" for r in records) == 114
    # Doubled CSV quotes become single quotes; mojibake is repaired.
    assert by_id["1G8LIWgKLME_3-2-rgb_front"].text.startswith('For a very small intricate design like an "i" you')
    assert by_id["cOCnNdL5fwI_3-8-rgb_front"].text == ('Curling irons come in various diameters they come very small, '
                                                       '1/2" they go to 3/4", the 1" 1 1/2" and then the 2".')
    assert by_id["5RR7dlzkyL0_1-5-rgb_front"].text.endswith("non-verbal\u2019s to work with.")
    assert not any("\u00e2" in r.text or '""' in r.text for r in records)


def test_real_bobsl_split_lists(realdata):
    root = realdata / "bobsl"
    lists = {name: [episode for _, episode in read_episode_list(root / f"{name}.txt")] for name in (
        "bobsl_align_train", "bobsl_align_val", "bobsl_align_test", "bobsl_align", "bobsl_train_1658",
        "bobsl_val_32", "bobsl_test_250")}
    assert {name: len(ids) for name, ids in lists.items()} == {
        "bobsl_align_train": 16, "bobsl_align_val": 4, "bobsl_align_test": 35, "bobsl_align": 55,
        "bobsl_train_1658": 1658, "bobsl_val_32": 32, "bobsl_test_250": 250}
    assert set(lists["bobsl_align"]) == set(lists["bobsl_align_train"] + lists["bobsl_align_val"]
                                             + lists["bobsl_align_test"])
    every = [episode for ids in lists.values() for episode in ids]
    assert all(len(episode) == 19 and episode.isdigit() for episode in every)
    assert "5085344787448740525" in lists["bobsl_train_1658"]  # beyond 2^53: kept as the exact string
    # Through the adapter (no subtitles in this copy): one missing_subtitle_file reject per listed episode.
    _, reasons, rejects = adapter_output(real_dataset("bobsl", root))
    assert set(reasons.values()) == {"missing_subtitle_file"}
    assert [r.source_id for r in rejects] == lists["bobsl_align_train"] + lists["bobsl_align_val"] + lists[
        "bobsl_align_test"]


def test_real_webvtt_proxy(realdata, tmp_path):
    """The signing-aligned proxy subtitles: 252 cues, 2 of zero length, 5 reversed (rejected), 96 overlapping the
    previous cue and 7 out of order (kept, times unchanged)."""
    folder = realdata / "bobsl" / "format_proxy_NOT_BOBSL"
    episode = "srf.2020-03-13.signhd"
    cues = parse_webvtt((folder / f"{episode}.vtt").read_text(encoding="utf-8"), episode)
    assert len(cues) == 252 and all(isinstance(cue, Cue) and cue.text for cue in cues)
    zero = {c.index for c in cues if c.end == c.start}
    reversed_ = {c.index for c in cues if c.end < c.start}
    overlapping = {c.index for p, c in zip(cues, cues[1:]) if c.start < p.end}
    out_of_order = {c.index for p, c in zip(cues, cues[1:]) if c.start < p.start}
    assert (len(zero), len(reversed_), len(overlapping), len(out_of_order)) == (2, 5, 96, 7)
    assert (cues[1].start, cues[1].end, cues[1].text) == (6.4, 6.4, "Livepassagen können Fehler enthalten.")

    (tmp_path / "episodes.txt").write_text(episode, encoding="utf-8")
    dataset = real_dataset("bobsl", tmp_path, ["train"], split_lists={"train": "episodes.txt"},
                           subtitle_dir=str(folder))
    records, reasons, _ = adapter_output(dataset)
    assert len(records) == 245 and len(reasons) == 7
    assert {index: reasons[("train", f"{episode}_{index:04d}")] for index in zero | reversed_} == (
        {i: "zero_length_cue" for i in zero} | {i: "reversed_cue" for i in reversed_})
    kept = {int(r.source_id.rsplit("_", 1)[1]): (r.time_start, r.time_end) for r in records}
    assert all(kept[i] == (cues[i].start, cues[i].end) for i in (overlapping | out_of_order) - zero - reversed_)

