"""``slp-curate build`` and ``slp-curate stats``: a YAML config with overrides in, shards, manifest, rejects,
summary, Table II and the duration histogram out."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from data_curation import pipeline
from data_curation.cli import main as curate
from data_curation.stats import format_table, manifest_stats
from tests.test_curation_pipeline import HEIGHT, WIDTH, _record, toy_corpus


@pytest.mark.parametrize("command", [[], ["build"], ["stats"], ["render"], ["synthetic"]])
def test_every_subcommand_prints_help(command):
    out = subprocess.run([sys.executable, "-m", "data_curation.cli", *command, "--help"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("usage: slp-curate")


def write_config(tmp_path) -> str:
    config = {
        "output": str(tmp_path / "build"),
        "records_per_shard": 8,
        "datasets": {"toy": {"adapter": "toy", "annotation_root": str(tmp_path),
                             "poses": {"root": str(tmp_path / "poses"), "width": WIDTH, "height": HEIGHT}}},
    }
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_build_then_stats_from_the_command_line(tmp_path, monkeypatch, capsys):
    items = toy_corpus(tmp_path, num_records=20)
    items += [("toy", _record(100, pose_path="gone.npy", key="gone")),
              ("toy", _record(101, sign_language="GSL", text_language="de", text="Das Wetter.", key="de1")),
              ("toy", _record(102, sign_language="GSL", text_language="de", text="Das Wetter.", key="de2"))]
    # The adapters are another module's; here the config's records come from the toy corpus.
    monkeypatch.setattr(pipeline, "iter_config_records", lambda cfg: iter(items))
    curate(["build", "--config", write_config(tmp_path), "workers=1", "min_frames=13"])
    out = capsys.readouterr().out
    # clip0 has 12 frames (< min_frames=13): records 0, 7 and 14 are rejected with it.
    assert "23 records → 19 samples (18 paired) in 3 shards, 4 rejected" in out
    assert "missing_pose_file 1, too_few_frames 3" in out
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["reconciled"] and summary["totals"]["written"] == 19

    curate(["stats", str(tmp_path / "build"), "--out", str(tmp_path / "stats")])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ASL", "GSL", "total"]
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert stats["table_ii"]["GSL"] == {"samples": 2, "paired": 2, "unpaired": 0, "sentences": 1,
                                        "hours": stats["table_ii"]["GSL"]["hours"], "sources": ["other"],
                                        "datasets": ["toy"]}
    # 17 ASL samples (20 minus 3 too short), 5 glosses → 5 template sentences; unpaired: record 10 (0 is too short).
    assert stats["table_ii"]["ASL"]["sentences"] == 5 and stats["table_ii"]["ASL"]["unpaired"] == 1
    frames = pq.read_table(tmp_path / "build" / "manifest.parquet")["frames"].to_pylist()
    assert stats["table_ii"]["total"]["hours"] == pytest.approx(sum(frames) / 25 / 3600, abs=1e-4)
    with Image.open(tmp_path / "stats" / "duration_histogram.png") as png:
        assert png.size == (700, 400)


def test_stats_table_is_aligned(tmp_path, monkeypatch):
    items = toy_corpus(tmp_path, num_records=10)
    monkeypatch.setattr(pipeline, "iter_config_records", lambda cfg: iter(items))
    curate(["build", "--config", write_config(tmp_path)])
    lines = format_table(manifest_stats(tmp_path / "build" / "manifest.parquet")).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["#samples", "paired", "unpaired", "#sentences", "hours",
                                                       "sources", "datasets"]
    assert len({len(line) for line in lines}) == 1


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        curate(["stats", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"slp-curate: error: {tmp_path / 'manifest.parquet'}: no such file; no "
                                       f"manifest.parquet (run slp-curate build first)\n")


def test_every_dataset_fixture_builds_end_to_end(tmp_path, capsys):
    from data_curation.fixtures import fixture_writers

    curate(["fixtures", "--out", str(tmp_path / "fixtures")])
    config = tmp_path / "fixtures" / "curate.yaml"
    curate(["build", "--config", str(config), f"output={tmp_path / 'build'}", "workers=2"])
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["reconciled"]
    assert set(summary["by_dataset"]) == set(fixture_writers()) and len(summary["by_dataset"]) == 10  # 9 + ASL Signs
    for name, splits in summary["by_dataset"].items():
        assert sum(s["written"] for s in splits.values()) > 0, name
    assert pq.read_table(tmp_path / "build" / "rejects.parquet").num_rows == summary["totals"]["rejected"]
    curate(["stats", str(tmp_path / "build")])
    stats = json.loads((tmp_path / "build" / "stats.json").read_text())
    assert set(stats["table_ii"]) == {"ASL", "BSL", "CSL", "GSL", "total"}
    assert stats["table_ii"]["total"]["samples"] == summary["totals"]["written"]
    capsys.readouterr()


def test_sl15m_config_names_the_nine_sources_and_keeps_benchmark_tests_out():
    from data_curation.adapters import registered_adapters
    from data_curation.config import CurateConfig
    from slp.config import load_config

    cfg = load_config(CurateConfig, "configs/curate/sl15m.yaml", ["workers=2"])
    assert cfg.workers == 2 and set(cfg.datasets) == set(registered_adapters())
    assert {d.adapter for d in cfg.datasets.values()} == set(registered_adapters())
    assert all(d.exclude_splits == ["test"] for name, d in cfg.datasets.items() if name != "bobsl")
