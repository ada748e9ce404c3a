"""``slp-curate audit``: it finds defects planted in a fixture build (a dev text copied into train, a test video id
reused in train, a cue past the end of its pose, a frame-count mismatch in a shard and one curation warned of, a
signer shared by signer-independent splits), exits 1 on the leak, reports a clean build as clean, and its HTML
report renders in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_curation.audit import audit_build, duration_outliers, missing_axis_limit, source_video
from data_curation.cli import main as curate
from data_curation.config import CurateConfig
from data_curation.fixtures import write_fixture_datasets
from data_curation.pipeline import REJECTS_SCHEMA, build
from pretrain.config import PretrainRunConfig
from slp.config import load_config
from slp.data.schema import Sample
from slp.data.shards import iter_samples, write_parquet_rows, write_shard
from slp.pose.layout import PART_SLICES
from tests.extract_fakes import unavailable

#: The fixtures' own cross-split overlaps (each a realistic defect, kept out of the clean build as SL-1.5M's curate
#: config keeps benchmark tests out): CSL-Daily's sentence S000000 is signed in train (P0000) and in test (P0001),
#: and MS-ASL's signer 114 signs in train and in test, although MS-ASL's splits are signer-independent.
FIXTURE_OVERLAPS = ("csl_daily", "msasl")


@pytest.fixture(scope="module")
def fixture_builds(tmp_path_factory) -> dict[str, Path]:
    """The nine fixtures built as they are, and the clean build: the same without the test splits of the two
    fixtures whose test splits overlap their train splits."""
    root = tmp_path_factory.mktemp("audit")
    config = write_fixture_datasets(root / "fixtures")
    builds = {"full": [], "clean": [f"datasets.{name}.exclude_splits=[test]" for name in FIXTURE_OVERLAPS]}
    for name, overrides in builds.items():
        build(load_config(CurateConfig, config, [f"output={root / name}", *overrides]))
    return {name: root / name for name in builds}


def audit_status(*args: str) -> int:
    """``slp-curate audit ARGS``' exit status (its main raises SystemExit only for a non-zero one)."""
    try:
        curate(["audit", *args])
    except SystemExit as exc:
        return exc.code
    return 0


def _manifest(build_dir: Path) -> list[dict]:
    return pq.read_table(build_dir / "manifest.parquet").to_pylist()


def _first(rows: list[dict], dataset: str, split: str) -> dict:
    return next(r for r in rows if r["dataset"] == dataset and r["split"] == split)


def plant(build_dir: Path, changes: dict[str, Callable[[Sample], Sample]]) -> None:
    """Rewrite the shards holding the keys of ``changes`` with those samples changed, unvalidated, as a foreign
    tool could write them (each shard read and written once, so refused samples are not lost on a second pass)."""
    shard_of = {r["key"]: r["shard"] for r in _manifest(build_dir)}
    for shard in sorted({shard_of[key] for key in changes}):
        path = build_dir / "shards" / shard
        samples = [changes[s.key](s) if s.key in changes else s for s in iter_samples([path])]
        write_shard(path, samples, validate=False)


def _with_meta(**fields) -> Callable[[Sample], Sample]:
    return lambda s: dataclasses.replace(s, meta=dataclasses.replace(s.meta, **fields))


def _cut_pose(frames: int) -> Callable[[Sample], Sample]:
    return lambda s: dataclasses.replace(s, pose=s.pose[:frames])


@pytest.fixture(scope="module")
def planted(fixture_builds, tmp_path_factory) -> dict:
    """The clean build with one defect of each kind planted; returns the build and the keys planted."""
    build_dir = tmp_path_factory.mktemp("planted") / "build"
    shutil.copytree(fixture_builds["clean"], build_dir)
    rows = _manifest(build_dir)
    dev_text, text_key = _first(rows, "how2sign", "dev"), _first(rows, "how2sign", "train")["key"]
    test_video, video_key = _first(rows, "wlasl", "test"), _first(rows, "wlasl", "train")["key"]
    cue, mismatch = _first(rows, "bobsl", "train"), _first(rows, "phoenix14", "train")
    signer_key = _first(rows, "slr500", "test")["key"]
    warned = _first(rows, "csl_daily", "train")
    plant(build_dir, {
        text_key: _with_meta(text=dev_text["text"]),
        video_key: _with_meta(source_id=test_video["source_id"]),
        cue["key"]: _cut_pose(cue["frames"] // 2),
        mismatch["key"]: _cut_pose(mismatch["frames"] - 5),
        signer_key: _with_meta(signer=_first(rows, "slr500", "train")["signer"]),
    })
    # What curation records for a clip whose length differs from the annotation's own count (CSL-Daily's length).
    warning = {"dataset": "csl_daily", "split": "train", "source_id": warned["source_id"], "key": warned["key"],
               "reason": "frame_count_mismatch", "detail": f"the clip has {warned['frames']} frames, the annotation "
                                                           f"says {warned['frames'] + 9}", "pose_path": ""}
    write_parquet_rows([warning], build_dir / "warnings.parquet", REJECTS_SCHEMA)
    return {"build": build_dir, "rows": rows, "dev_text": dev_text, "text_key": text_key, "test_video": test_video,
            "video_key": video_key, "cue": cue, "mismatch": mismatch, "signer_key": signer_key, "warning": warning}


def test_clean_fixture_build_is_clean(fixture_builds, tmp_path, capsys):
    assert audit_status(str(fixture_builds["clean"]), "--out", str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("no leak: clean →") and len(lines) == 2
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert report["clean"] and not report["leak"] and set(report["counts"].values()) == {0}
    assert report["samples"] == len(_manifest(fixture_builds["clean"]))
    # The default rule reads the train splits: every test split the build holds is an excluded one.
    assert "wlasl/test" in report["pretraining"]["excluded_test_splits"]
    assert "csl_daily/test" not in report["pretraining"]["splits"]
    # Curation dropped the fixtures' cues past the end of their sequences: context, not findings.
    assert {c["dataset"] for c in report["curation"]["cues_dropped_past_end"]} == {"bobsl", "how2sign", "msasl"}
    assert (tmp_path / "audit.html").stat().st_size > 0


def test_fixture_overlaps_are_found_in_the_full_build(fixture_builds):
    report = audit_build(fixture_builds["full"], progress=False).report
    assert not report["leak"]
    counts = {name: n for name, n in report["counts"].items() if n}
    assert counts == {"texts_across_splits": 1, "shared_signers": 1}
    (text,) = report["findings"]["texts_across_splits"]
    assert text["splits"] == {"csl_daily/test": ["csl_daily_test_S000000_P0001_T00"],
                              "csl_daily/train": ["csl_daily_train_S000000_P0000_T00"]}
    assert text["excluded_test_read"]  # csl_daily/test is excluded; its sentence is in train, which is read
    (signer,) = report["findings"]["shared_signers"]
    assert (signer["dataset"], signer["signer"], sorted(signer["splits"])) == ("msasl", "114", ["test", "train"])


def test_planted_defects_are_found(planted):
    report = audit_build(planted["build"], progress=False).report
    findings, counts = report["findings"], report["counts"]
    assert counts == {"leaks": 1, "sources_across_splits": 0, "texts_across_splits": 1, "cues_past_pose_end": 1,
                      "frame_count_mismatches": 2, "shared_signers": 1, "unreadable_samples": 0}
    assert report["leak"] and not report["clean"]

    (leak,) = findings["leaks"]
    test_video = planted["test_video"]
    assert (leak["adapter"], leak["video"]) == ("wlasl", test_video["source_id"])
    assert leak["splits"] == {"wlasl/test": [test_video["key"]], "wlasl/train": [planted["video_key"]]}
    assert leak["excluded_test_splits"] == ["wlasl/test"] and leak["read_by_pretraining"] == [planted["video_key"]]

    (text,) = findings["texts_across_splits"]
    dev = planted["dev_text"]
    assert text["text"] == dev["text"]
    assert text["splits"] == {"how2sign/dev": [dev["key"]], "how2sign/train": [planted["text_key"]]}
    assert not text["excluded_test_read"]  # dev is held out, but it is not a test split

    cue = planted["cue"]
    (past_end,) = findings["cues_past_pose_end"]
    assert past_end["key"] == cue["key"] and past_end["pose_frames"] == cue["frames"] // 2
    # The cue ends where its frame range does; the pose, half the clip later than it starts.
    assert past_end["cue_end_seconds"] == pytest.approx(past_end["frame_end"] / cue["fps"], abs=1e-3)
    assert past_end["pose_end_seconds"] == pytest.approx((past_end["frame_start"] + cue["frames"] // 2) / cue["fps"],
                                                         abs=1e-3)
    assert past_end["frame_end"] - past_end["frame_start"] == cue["frames"]

    mismatch = planted["mismatch"]
    frames, warned = findings["frame_count_mismatches"]
    assert (frames["key"], frames["source"], frames["pose_frames"]) == (mismatch["key"], "shard",
                                                                        mismatch["frames"] - 5)
    assert frames["frame_end"] - frames["frame_start"] == mismatch["frames"]
    assert (warned["key"], warned["source"], warned["detail"]) == (planted["warning"]["key"], "curation warning",
                                                                   planted["warning"]["detail"])

    (signer,) = findings["shared_signers"]
    assert signer["dataset"] == "slr500" and planted["signer_key"] in signer["splits"]["test"]
    # The two samples every reader refuses are findings, not counted samples.
    assert report["samples"] == len(planted["rows"]) - 2


def test_leak_exits_1_with_one_line_per_finding(planted, tmp_path, capsys):
    assert audit_status(str(planted["build"]), "--out", str(tmp_path)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"LEAK: source video wlasl:{planted['test_video']['source_id']} of excluded "
                               f"wlasl/test is read by pre-training")
    assert sum(line.startswith("text in several splits: ") for line in lines) == 1
    assert sum(line.startswith(f"cue past the end of its pose: {planted['cue']['key']}") for line in lines) == 1
    assert sum(line.startswith(f"frame count mismatch: {planted['mismatch']['key']}") for line in lines) == 1
    assert f"frame count mismatch (curation warning): {planted['warning']['key']}: {planted['warning']['detail']}" \
        in lines
    assert sum(line.startswith("signer ") for line in lines) == 1
    assert lines[-1].startswith("LEAK: 1 leaks, 1 texts_across_splits, 1 cues_past_pose_end, 2 frame_count_mismatches,"
                                " 1 shared_signers →")


def test_the_pretraining_config_decides_what_is_excluded(planted, tmp_path):
    """Under the paper's rule dev is read too: the dev text is then in two read splits, still a finding; the test
    video still leaks. A rule that reads wlasl's test split has no excluded test split there to leak."""
    report = audit_build(planted["build"], load_config(PretrainRunConfig, "configs/pretrain/paper.yaml").data,
                         progress=False).report
    assert report["pretraining"]["splits"]["how2sign/dev"] == "read"
    assert report["counts"]["leaks"] == 1 and report["counts"]["texts_across_splits"] == 1
    config = tmp_path / "reads_tests.yaml"
    config.write_text("data: {splits: [train, dev, test]}\n", encoding="utf-8")
    assert audit_status(str(planted["build"]), "--out", str(tmp_path), "--pretrain-config", str(config)) == 0
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert report["pretraining"]["test_splits_read"] and not report["pretraining"]["excluded_test_splits"]
    (video,) = report["findings"]["sources_across_splits"]
    assert video["video"] == planted["test_video"]["source_id"]


def test_missing_parts_and_confidences_count_every_frame(fixture_builds):
    build_dir = fixture_builds["clean"]
    report = audit_build(build_dir, progress=False).report
    poses = [s.pose for s in iter_samples(sorted((build_dir / "shards").glob("*.tar"))) if s.meta.dataset == "wlasl"]
    conf = np.concatenate(poses)[..., 2].astype(np.float32)
    missing = {part: (conf[:, PART_SLICES[part]] == 0).all(axis=1) for part in ("left_hand", "right_hand", "face")}
    wlasl = report["datasets"]["wlasl"]
    assert wlasl["missing_frame_rate"]["left_hand"] == round(float(missing["left_hand"].mean()), 4) > 0
    assert wlasl["missing_frame_rate"]["both_hands"] == round(float((missing["left_hand"]
                                                                     & missing["right_hand"]).mean()), 4)
    assert wlasl["missing_frame_rate"]["face"] == round(float(missing["face"].mean()), 4)
    histogram = wlasl["confidence_histogram"]["counts"]
    assert sum(histogram["left_hand"]) == int((conf[:, PART_SLICES["left_hand"]] > 0).sum())
    assert wlasl["frames"] == len(conf)


def test_duration_outliers_on_log_seconds():
    seconds = np.array([2.0, 2.1, 1.9, 2.2, 1.8, 2.05, 1.95, 2.15, 1.85, 2.0, 40.0, 0.05])
    keys = [f"k{i}" for i in range(len(seconds))]
    assert [o["key"] for o in duration_outliers(keys, seconds)] == ["k11", "k10"]  # 1/40 and 20 × the median
    assert duration_outliers(keys[:5], seconds[:5]) == []  # too few clips to call one odd
    assert duration_outliers(keys, np.full(len(keys), 3.0)) == []  # no spread


def test_source_videos_of_clips_cut_from_one_recording():
    assert source_video("bobsl", "6001234567890123457_0012") == "6001234567890123457"
    assert source_video("how2sign", "-fx3Qk9Lm2A_1-1-rgb_front") == "-fx3Qk9Lm2A-1-rgb_front"
    assert source_video("how2sign", "3HCjTYIijec_10_11-2-rgb_front") == "3HCjTYIijec-2-rgb_front"  # merged sentences
    assert source_video("wlasl", "05237") == "05237"


def test_a_folder_that_is_not_a_build_is_one_line_and_exit_2(tmp_path, capsys):
    for folder, problem in ((tmp_path / "nope", "no such folder"),
                            (tmp_path, "no manifest.parquet and shards/*.tar; not a curation build")):
        assert audit_status(str(folder)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"slp-curate: error: {folder}: {problem}") and err.count("\n") == 1


@pytest.fixture
def chromium() -> str:
    """The headless browser: skipped on a machine without it, a failure in CI (whose .ci/run installs it)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        unavailable("chromium not found (Debian: apt-get install chromium; .ci/run installs it)")
    return browser


def test_html_report_renders_in_headless_chromium(chromium, planted, tmp_path):
    assert audit_status(str(planted["build"]), "--out", str(tmp_path / "report")) == 1
    page = (tmp_path / "report" / "audit.html").as_uri()
    # No sandbox: CI containers run as root; a profile folder of its own, so no running browser is involved.
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    for plot in ("plot-missing", "plot-confidence", "plot-durations"):
        start = dom.index(f'<svg id="{plot}"')
        assert "<path" in dom[start:dom.index("</svg>", start)], plot  # drawn, not an empty frame
    for table in ("finding-leaks", "finding-texts_across_splits", "finding-cues_past_pose_end",
                  "finding-frame_count_mismatches", "finding-shared_signers", "datasets"):
        assert f'<table id="{table}">' in dom, table
    assert 'class="status leak"' in dom
    screenshot = tmp_path / "audit.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1200,2400", page], capture_output=True,
                   timeout=120, check=True)
    with Image.open(screenshot) as image:
        assert image.size == (1200, 2400)
        assert len(set(image.convert("L").getdata())) > 16  # text and plots, not a blank page


# --- damaged builds: one garbled member, files that are not whole or not curation's ------------------------------


def _copy(build_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    return copy


def test_a_garbled_member_is_one_unreadable_sample_and_the_audit_goes_on(fixture_builds, tmp_path, capsys):
    build_dir = _copy(fixture_builds["clean"], tmp_path)
    shard = sorted((build_dir / "shards").glob("*.tar"))[0]
    data = shard.read_bytes()
    shape = data.index(b"(", data.index(b"'shape'"))  # the first sample's pose.npy: its shape's bracket left open
    end = data.index(b")", shape)
    shard.write_bytes(data[:end] + b" " + data[end + 1:])  # np.load raises tokenize.TokenError on this header
    first = next(iter(iter_samples([fixture_builds["clean"] / "shards" / shard.name])))
    assert audit_status(str(build_dir), "--out", str(tmp_path / "report")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"unreadable: {shard} {first.key}: unreadable pose.npy (TokenError: EOF in multi-line statement)" in lines
    report = json.loads((tmp_path / "report" / "audit.json").read_text(encoding="utf-8"))
    assert report["counts"]["unreadable_samples"] == 1
    assert report["samples"] == len(_manifest(build_dir)) - 1  # every other sample was read


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _other_table(path: Path) -> None:
    pq.write_table(pa.table({"key": ["a"], "frames": [3]}), path)  # what another tool writes under the name


RERUN = "rerun slp-curate build to write it again"
PARQUET_DAMAGE = {
    "truncated": (_truncate, "not a readable Parquet file (Parquet magic bytes not found in footer. Either the file "
                             "is corrupted or this is not a parquet file.); " + RERUN),
    "folder": (_replace_with_folder, "is a directory, not a file"),
    "another_table": (_other_table, None),
}


@pytest.mark.parametrize("damage", sorted(PARQUET_DAMAGE))
@pytest.mark.parametrize("name, columns", [("manifest.parquet", ["dataset"]),
                                           ("rejects.parquet", ["dataset", "split", "source_id", "reason", "detail"]),
                                           ("warnings.parquet", ["dataset", "split", "source_id", "reason", "detail"])])
def test_a_damaged_parquet_file_of_the_build_is_one_line_and_exit_2(fixture_builds, tmp_path, capsys, name, columns,
                                                                    damage):
    build_dir = _copy(fixture_builds["clean"], tmp_path)
    change, message = PARQUET_DAMAGE[damage]
    change(build_dir / name)
    if message is None:
        message = f"lacks the column(s) {columns}; {RERUN}"
    assert audit_status(str(build_dir), "--out", str(tmp_path / "report")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.rsplit("\r", 1)[-1] == f"slp-curate: error: {build_dir / name}: {message}\n"


@pytest.mark.parametrize("damage, message", [
    ("truncated", "{path}:{line}:{column}: not valid JSON ({reason}; truncated?)"),
    ("folder", "{path}: is a directory, not a file"),
    ("a_list", "{path}: holds a JSON list, not the object slp-curate build writes"),
    ("by_dataset_a_list", "{path}: by_dataset is not the counts per dataset and split slp-curate build writes"),
    ("not_utf8", "{path}: not UTF-8 text (invalid start byte at byte 0)"),
])
def test_a_damaged_summary_is_one_line_and_exit_2(fixture_builds, tmp_path, capsys, damage, message):
    build_dir = _copy(fixture_builds["clean"], tmp_path)
    summary = build_dir / "summary.json"
    text = summary.read_text(encoding="utf-8")
    fields = {"path": summary}
    if damage == "truncated":
        summary.write_text(text[: len(text) // 2], encoding="utf-8")
        with pytest.raises(json.JSONDecodeError) as error:
            json.loads(text[: len(text) // 2])
        fields |= {"line": error.value.lineno, "column": error.value.colno, "reason": error.value.msg}
    elif damage == "folder":
        _replace_with_folder(summary)
    elif damage == "a_list":
        summary.write_text("[1, 2]", encoding="utf-8")
    elif damage == "by_dataset_a_list":
        summary.write_text('{"by_dataset": [1, 2]}', encoding="utf-8")
    else:
        summary.write_bytes(b"\xff" + text.encode("utf-8"))
    assert audit_status(str(build_dir), "--out", str(tmp_path / "report")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.rsplit("\r", 1)[-1] == f"slp-curate: error: {message.format(**fields)}\n"


# --- the words of the report -------------------------------------------------------------------------------------


def test_a_sentence_shared_with_an_excluded_test_split_is_not_called_read_or_a_leak(fixture_builds, tmp_path,
                                                                                     capsys):
    """CSL-Daily's sentence S000000 is in its excluded test split and in train: the line says what is read (train)
    and that it is no leak, as the verdict below it does."""
    assert audit_status(str(fixture_builds["full"]), "--out", str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    (text,) = report["findings"]["texts_across_splits"]
    assert (f"text in several splits (in excluded csl_daily/test, and in csl_daily/train, which pre-training reads: "
            f"a shared sentence, not a leaked video): {json.dumps(text['text'], ensure_ascii=False)}: "
            f"csl_daily/test: csl_daily_test_S000000_P0001_T00; csl_daily/train: csl_daily_train_S000000_P0000_T00"
            in lines)
    assert report["pretraining"]["splits"]["csl_daily/test"] == "excluded_test" and not report["leak"]
    assert lines[-1].startswith("no leak: 1 texts_across_splits, 1 shared_signers →")
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert "read by pre-training" not in page
    assert ("<th>text</th><th>excluded test split</th><th>pre-training reads it in</th><th>samples by split</th>"
            in page)
    assert "<td>csl_daily/test</td><td>csl_daily/train</td>" in page


def test_the_missing_parts_axis_ends_near_the_longest_bar(fixture_builds, tmp_path):
    assert missing_axis_limit([0.24, 0.1, 0.0]) == pytest.approx(0.276)
    assert missing_axis_limit([0.0, 0.0]) == 0.05 and missing_axis_limit([0.95]) == 1.0
    assert audit_status(str(fixture_builds["clean"]), "--out", str(tmp_path)) == 0
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    longest = max(rate for d in report["datasets"].values() for rate in d["missing_frame_rate"].values())
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    plot = page[page.index('<svg id="plot-missing"'):]
    plot = plot[:plot.index("</svg>")]
    ticks = [float(t) for t in re.findall(r'<g id="xtick_\d+">.*?<text[^>]*>([^<]*)</text>', plot, re.S)]
    assert longest < 0.5 and ticks[-1] <= missing_axis_limit([longest]) == pytest.approx(1.15 * longest)
    assert ticks[-1] < 1.0 and ticks[-1] + (ticks[1] - ticks[0]) > longest  # the last tick within a step of it
