"""User errors of ``slp-curate`` — configs, annotation files that stop a whole dataset, render / stats / fixtures
inputs — each print exactly ONE line, ``slp-curate: error: <file or option>: <what is wrong>``, exit with status 2
and never show a traceback; a bug inside one record is a ``processing_error`` reject with its traceback in
errors.log and a one-line count on the console."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from data_curation import pipeline
from data_curation.cli import main as curate
from data_curation.fixtures import write_fixture_datasets
from tests.cli import one_line_error
from tests.test_adversarial_poses import Exploding

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wlasl(tmp_path_factory) -> tuple[Path, dict]:
    """A WLASL fixture and its curate config as a dict (each case writes its own variant)."""
    root = tmp_path_factory.mktemp("cli_wlasl")
    config = yaml.safe_load(write_fixture_datasets(root, ("wlasl",)).read_text(encoding="utf-8"))
    return root, config


def write_config(path: Path, config: dict, **changes) -> str:
    config = json.loads(json.dumps(config))
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def dataset_config(tmp: Path, adapter: str, files: dict[str, bytes], **options) -> str:
    """A config over one dataset whose annotation root holds ``files`` (relative name → bytes)."""
    root = tmp / adapter
    root.mkdir()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (tmp / "poses").mkdir(exist_ok=True)
    config = {"output": str(tmp / "out"), "datasets": {adapter: {
        "adapter": adapter, "annotation_root": str(root), "poses": {"root": str(tmp / "poses"), "width": 10,
                                                                     "height": 10}, "options": options}}}
    path = tmp / "curate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@dataclass
class Case:
    name: str
    # (tmp folder, WLASL fixture root, its config) → (argv, the expected message after "slp-curate: error: ")
    make: Callable[[Path, Path, dict], tuple[list[str], str]]
    exact: bool = True  # False: the expected message is a prefix (the rest quotes a library's wording)


def _build(path: str, *overrides: str) -> list[str]:
    return ["build", "--config", path, *overrides]


def _truncated_wlasl(tmp, root, config):
    annotations = tmp / "wlasl"
    shutil.copytree(root / "wlasl", annotations, ignore=shutil.ignore_patterns("poses"))
    text = (annotations / "WLASL_v0.3.json").read_text(encoding="ascii")[:2000]
    (annotations / "WLASL_v0.3.json").write_text(text, encoding="ascii")
    with pytest.raises(json.JSONDecodeError) as error:
        json.loads(text)
    path = write_config(tmp / "c.yaml", config, datasets__wlasl__annotation_root=str(annotations))
    return _build(path), (f"wlasl: {annotations / 'WLASL_v0.3.json'}:{error.value.lineno}:{error.value.colno}: not "
                          f"valid JSON ({error.value.msg}; truncated?)")


def _python_tag(tmp, root, config):
    path = tmp / "c.yaml"
    path.write_text(f"output: !!python/object/apply:os.system ['touch {tmp / 'PWNED'}']\n", encoding="utf-8")
    return _build(str(path)), (f"{path}:1:9: invalid YAML (could not determine a constructor for the tag "
                               f"'tag:yaml.org,2002:python/object/apply:os.system')")


def _split_pickle(tmp, root, config):
    marker = tmp / "EXECUTED"
    path = dataset_config(tmp, "nmfs_csl", {"train.pkl": pickle.dumps([Exploding(str(marker))])})
    return _build(path), (f"nmfs_csl: {tmp / 'nmfs_csl' / 'train.pkl'} is a pickle, and unpickling runs code from "
                          f"the file; read it only from a source you trust, with the adapter option allow_pickle: "
                          f"true (or give a text split list of '<name> <label>' lines)")


def _corrupt_shard(tmp, root, config):
    shard = tmp / "broken.tar"
    shard.write_bytes(b"not a tar archive" * 64)
    return ["render", str(shard), "--out", str(tmp / "r")], f"{shard}: no valid sample in this shard"


REGISTERED = "asl_signs, bobsl, csl_daily, how2sign, msasl, nmfs_csl, phoenix14, phoenix14t, slr500, wlasl"
CASES = [
    # the config file
    Case("missing_config", lambda t, r, c: (_build(str(t / "nowhere.yaml")), f"{t / 'nowhere.yaml'}: no such file")),
    Case("config_is_a_directory", lambda t, r, c: (_build(str(t)), f"{t}: is a directory, not a file")),
    Case("yaml_syntax_error", lambda t, r, c: (
        _build(str(_write(t / "c.yaml", "output: [1, 2\nworkers: 1\n"))),
        f"{t / 'c.yaml'}:2:8: invalid YAML (expected ',' or ']', but got ':')")),
    Case("yaml_python_tag", _python_tag),
    Case("config_not_utf8", lambda t, r, c: (_build(str(_write(t / "c.yaml", b"output: caf\xe9\n"))),
                                             f"{t / 'c.yaml'}: not UTF-8 text (invalid continuation byte at byte 11)")),
    Case("config_top_level_list", lambda t, r, c: (_build(str(_write(t / "c.yaml", "- 1\n"))),
                                                   f"{t / 'c.yaml'}: top level must be a mapping")),
    Case("unknown_key", lambda t, r, c: (_build(write_config(t / "c.yaml", c, colour="red")),
                                         f"{t / 'c.yaml'}: unknown key(s) ['colour']; known: ['datasets', "
                                         f"'max_frames', 'min_frames', 'output', 'records_per_shard', 'seed', "
                                         f"'workers']")),
    Case("pose_format_mp4", lambda t, r, c: (_build(write_config(t / "c.yaml", c), "datasets.wlasl.poses.format=mp4"),
                                             f"{t / 'c.yaml'}.datasets.wlasl.poses.format: expected one of ('auto', "
                                             f"'pose', 'mmpose_json', 'npy', 'npz', 'openpose_json', "
                                             f"'asl_signs_parquet', 'pickle'), "
                                             f"got 'mp4'")),
    Case("workers_not_a_number", lambda t, r, c: (_build(write_config(t / "c.yaml", c), "workers=many"),
                                                  f"{t / 'c.yaml'}.workers: expected an integer, got 'many'")),
    Case("override_without_value", lambda t, r, c: (_build(write_config(t / "c.yaml", c), "workers"),
                                                    "override 'workers' is not of the form key=value")),
    Case("records_per_shard_zero", lambda t, r, c: (_build(write_config(t / "c.yaml", c), "records_per_shard=0"),
                                                    f"{t / 'c.yaml'}: records_per_shard: must be >= 1, got 0")),
    Case("unknown_split", lambda t, r, c: (_build(write_config(t / "c.yaml", c, datasets__wlasl__splits=["val"])),
                                           f"{t / 'c.yaml'}.datasets.wlasl.splits[0]: expected one of ('train', "
                                           f"'dev', 'test'), got 'val'")),
    Case("negative_fps", lambda t, r, c: (_build(write_config(t / "c.yaml", c), "datasets.wlasl.poses.fps=-25"),
                                          f"{t / 'c.yaml'}: datasets.wlasl.poses.fps: must be a positive number, "
                                          f"got -25.0")),
    Case("pickle_format_without_opt_in", lambda t, r, c: (
        _build(write_config(t / "c.yaml", c), "datasets.wlasl.poses.format=pickle",
               f"datasets.wlasl.poses.root={t / 'c.yaml'}"),
        f"{t / 'c.yaml'}: datasets.wlasl.poses.allow_pickle: format pickle reads pickles, which run code when "
        f"loaded: set allow_pickle: true for a source you trust")),
    Case("output_is_a_file", lambda t, r, c: (_build(write_config(t / "c.yaml", c, output=str(t / "c.yaml"))),
                                              f"{t / 'c.yaml'}: output: {t / 'c.yaml'}: is a file, not a folder")),
    Case("missing_pose_root", lambda t, r, c: (
        _build(write_config(t / "c.yaml", c, datasets__wlasl__poses__root=str(t / "gone"))),
        f"{t / 'c.yaml'}: datasets.wlasl.poses.root: {t / 'gone'}: no such folder")),
    Case("unknown_adapter", lambda t, r, c: (
        _build(write_config(t / "c.yaml", c, datasets__wlasl__adapter="wlasl2")),
        f"datasets.wlasl.adapter: unknown dataset adapter 'wlasl2'; registered: {REGISTERED}")),
    Case("missing_annotation_root", lambda t, r, c: (
        _build(write_config(t / "c.yaml", c, datasets__wlasl__annotation_root=str(t / "gone"))),
        f"{t / 'c.yaml'}: datasets.wlasl.annotation_root: {t / 'gone'}: no such folder")),
    Case("missing_config_argument", lambda t, r, c: (
        ["build"], "the following arguments are required: --config (see slp-curate build --help)")),
    # annotation files and options that stop a whole dataset
    Case("truncated_wlasl_json", _truncated_wlasl),
    Case("wlasl_json_is_a_dict", lambda t, r, c: (_build(dataset_config(t, "wlasl", {"WLASL_v0.3.json": b"{}"})),
                                                  f"wlasl: {t / 'wlasl' / 'WLASL_v0.3.json'} holds a dict, expected "
                                                  f"the list of {{gloss, instances}} objects of WLASL_v0.3.json")),
    Case("wlasl_json_is_a_directory", lambda t, r, c: (
        _build(dataset_config(t, "wlasl", {"WLASL_v0.3.json/x": b""})),
        f"wlasl: annotation file {t / 'wlasl' / 'WLASL_v0.3.json'}: is a directory, not a file (annotation_root="
        f"{t / 'wlasl'})")),
    Case("option_outside_its_choices", lambda t, r, c: (
        _build(dataset_config(t, "wlasl", {"WLASL_v0.3.json": b"[]"}, clips="fancy")),
        "wlasl: option clips='fancy'; expected one of ['raw', 'trimmed']")),
    Case("pose_name_unknown_field", lambda t, r, c: (
        _build(dataset_config(t, "wlasl", {"WLASL_v0.3.json": b"[]"}, pose_name="{nope}")),
        "wlasl: option pose_name '{nope}' must name fields among ['gloss', 'label', 'signer', 'source_id', "
        "'source_video', 'split', 'video_id'] (unknown: ['nope'])")),
    Case("pose_name_unbalanced_brace", lambda t, r, c: (
        _build(dataset_config(t, "wlasl", {"WLASL_v0.3.json": b"[]"}, pose_name="{video_id")),
        "wlasl: option pose_name '{video_id': expected '}' before end of string")),
    Case("msasl_classes_not_a_list", lambda t, r, c: (
        _build(dataset_config(t, "msasl", {"MSASL_classes.json": b'{"a": 1}'})),
        f"msasl: {t / 'msasl' / 'MSASL_classes.json'} is not a JSON list of class names")),
    Case("msasl_split_file_missing", lambda t, r, c: (
        _build(dataset_config(t, "msasl", {"MSASL_classes.json": b'["a"]'})),
        f"msasl: annotation file {t / 'msasl' / 'MSASL_train.json'}: no such file (annotation_root={t / 'msasl'})")),
    Case("nmfs_split_pickle_without_opt_in", _split_pickle),
    Case("slr500_vocabulary_label_twice", lambda t, r, c: (
        _build(dataset_config(t, "slr500", {"dictionary.txt": "0 你\n0 我\n".encode()})),
        f"{t / 'slr500' / 'dictionary.txt'}: label 0 appears twice ('你', '我')")),
    Case("slr500_train_signers_text", lambda t, r, c: (
        _build(dataset_config(t, "slr500", {"dictionary.txt": b"0 a\n"}, train_signers="many")),
        "slr500: option train_signers='many' is not a signer count")),
    Case("how2sign_header_lacks_columns", lambda t, r, c: (
        _build(dataset_config(t, "how2sign", {"how2sign_realigned_train.csv": b"A\tB\r\n1\t2\r\n",
                                              "how2sign_realigned_val.csv": b"", "how2sign_realigned_test.csv": b""})),
        f"{t / 'how2sign' / 'how2sign_realigned_train.csv'}: header 'A\\tB' lacks the column(s) ['VIDEO_NAME', "
        f"'SENTENCE_NAME', 'START_REALIGNED', 'END_REALIGNED', 'SENTENCE']")),
    Case("csl_daily_split_file_missing", lambda t, r, c: (
        _build(dataset_config(t, "csl_daily", {"video_map.txt": b"index|name|length|gloss|char|word|postag\n"})),
        f"csl_daily: annotation file {t / 'csl_daily' / 'split_1.txt'}: no such file (annotation_root="
        f"{t / 'csl_daily'})")),
    Case("phoenix14t_option_outside_its_choices", lambda t, r, c: (
        _build(dataset_config(t, "phoenix14t", {}, train_annotation="fancy")),
        "phoenix14t: option train_annotation='fancy'; expected one of ['complex', 'plain']")),
    Case("bobsl_unknown_split_list", lambda t, r, c: (
        _build(dataset_config(t, "bobsl", {}, split_lists={"holdout": "x.txt"})),
        "bobsl: option split_lists names the unknown split 'holdout'")),
    # render, stats, fixtures, synthetic
    Case("render_missing_file", lambda t, r, c: (["render", str(t / "x.pose"), "--out", str(t / "r")],
                                                 f"{t / 'x.pose'}: no such file")),
    Case("render_a_directory", lambda t, r, c: (["render", str(t), "--out", str(t / "r")],
                                                f"{t}: is a directory, not a file")),
    Case("render_corrupt_pose", lambda t, r, c: (
        ["render", str(_write(t / "x.pose", b"\x00garbage")), "--out", str(t / "r")],
        f"{t / 'x.pose'}: not a readable .pose file"), exact=False),
    Case("render_npy_without_fps", lambda t, r, c: (
        ["render", str(_npy(t / "x.npy")), "--out", str(t / "r")],
        f"{t / 'x.npy'}: .npy files do not record the fps; give it (the video's fps)")),
    Case("render_pickle_without_opt_in", lambda t, r, c: (
        ["render", str(_write(t / "x.pkl", b"")), "--key", "a", "--out", str(t / "r"), "--fps", "25"],
        f"{t / 'x.pkl'}: pickles can run arbitrary code when loaded; read them only from sources you trust, with "
        f"allow_pickle=True (curation config: poses.allow_pickle: true)")),
    Case("render_corrupt_shard", _corrupt_shard, exact=False),
    Case("stats_of_a_file_that_is_not_a_manifest", lambda t, r, c: (
        ["stats", str(_write(t / "manifest.parquet", b"PAR1 not parquet"))],
        f"{t / 'manifest.parquet'}: not a curation manifest ("), exact=False),
    Case("fixtures_of_an_unknown_dataset", lambda t, r, c: (
        ["fixtures", "--out", str(t / "f"), "--datasets", "nope"],
        f"unknown fixture dataset(s) ['nope']; known: {REGISTERED}")),
    Case("synthetic_unknown_override", lambda t, r, c: (
        ["synthetic", "--out", str(t / "s"), "colour=red"], "SyntheticConfig: unknown key(s) ['colour']"),
         exact=False),
]


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _npy(path: Path) -> Path:
    np.save(path, np.ones((3, 133, 3), np.float32))
    return path


def test_at_least_forty_distinct_user_errors():
    assert len({case.name for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_user_error_is_one_line_and_status_2(case, wlasl, tmp_path, capsys):
    argv, expected = case.make(tmp_path, *wlasl)
    line = one_line_error(capsys, curate, argv)
    if case.exact:
        assert line == f"slp-curate: error: {expected}"
    else:
        assert line.startswith(f"slp-curate: error: {expected}"), line
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "EXECUTED").exists()  # nothing was executed


@pytest.mark.parametrize("name", ["truncated_wlasl_json", "yaml_python_tag"])
def test_the_console_script_prints_the_same_line(name, wlasl, tmp_path):
    """The real process: stderr holds the one line (a progress bar started before it is erased: no line)."""
    case = next(case for case in CASES if case.name == name)
    argv, expected = case.make(tmp_path, *wlasl)
    run = subprocess.run([sys.executable, "-m", "data_curation.cli", *argv], capture_output=True, cwd=REPO)
    assert run.returncode == 2 and run.stderr.count(b"\n") == 1 and b"Traceback" not in run.stderr
    assert run.stderr.rsplit(b"\r", 1)[-1].decode("utf-8") == f"slp-curate: error: {expected}\n"


def test_a_bug_in_one_record_is_a_processing_error_with_its_traceback_in_the_log(wlasl, tmp_path, capsys,
                                                                                    monkeypatch):
    root, config = wlasl
    check_text = pipeline._check_text

    def failing(record):
        if record.source_id == "05237":
            raise RuntimeError("boom")
        check_text(record)

    monkeypatch.setattr(pipeline, "_check_text", failing)
    output = tmp_path / "build"
    curate(_build(write_config(tmp_path / "c.yaml", config, output=str(output))))
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    assert (f"1 record(s) failed with an unexpected error (processing_error): tracebacks in {output / 'errors.log'}"
            in out.out.splitlines())
    rejects = {r["source_id"]: r for r in pq.read_table(output / "rejects.parquet").to_pylist()}
    assert rejects["05237"]["reason"] == "processing_error"
    assert rejects["05237"]["detail"] == "RuntimeError: boom (traceback in errors.log)"
    log = (output / "errors.log").read_text(encoding="utf-8")
    assert log.startswith("wlasl/train 05237 (05237.npz):\nTraceback (most recent call last):")
    assert "RuntimeError: boom" in log
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["reconciled"] and summary["totals"]["rejects_by_reason"]["processing_error"] == 1
    # Fixed, the same command leaves no stale log behind.
    monkeypatch.setattr(pipeline, "_check_text", check_text)
    curate(_build(str(tmp_path / "c.yaml")))
    capsys.readouterr()
    assert not (output / "errors.log").exists()
