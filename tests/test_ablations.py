"""The ablation harness end to end on a CI-sized slice: one seed, two variants of Table XIV."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _harness():
    spec = importlib.util.spec_from_file_location("ablations", REPO / "benchmarks" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablations"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_table_slice_runs_prints_the_paper_layout_and_reuses_finished_runs(tmp_path, capsys):
    harness = _harness()
    args = ["--tables", "XIV", "--variants", "default", "pr-only", "--seeds", "0", "--steps", "20",
            "--corpus-overrides", "num_glosses=8", "num_signers=5", "dev_signers=1", "test_signers=1",
            "repetitions=2", "sentences_per_signer=4",
            "--finetune-overrides", "optim.epochs=1", "--out", str(tmp_path)]
    summary = harness.main(args)
    printed = capsys.readouterr().out
    assert "TABLE XIV: pretext tasks" in printed
    assert "| PR | STC | ISLR probe top-1 (%) | ISLR fine-tuned top-1 (%) |" in printed
    assert "| ✓ |  | " in printed and "| ✓ | ✓ | " in printed
    assert "|  | ✓ | " not in printed  # STC only was not asked for
    for label in ("default", "pr-only"):
        (run,) = summary["results"][label]
        assert run["seed"] == 0 and 0 <= run["probe"] <= 100 and 0 <= run["finetune"] <= 100
    assert set(summary["results"]) == {"default", "pr-only"}
    assert (tmp_path / "table_XIV.png").stat().st_size > 0
    assert json.loads((tmp_path / "ablations.json").read_text())["results"] == summary["results"]

    results = sorted(tmp_path.glob("runs/*/seed0/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    again = harness.main(args)
    assert again["results"] == summary["results"]
    assert [p.stat().st_mtime_ns for p in results] == stamps  # read back, not run again

    with pytest.raises(SystemExit, match="corpus of another config"):
        harness.main([*args[:-1], str(tmp_path), "--corpus-overrides", "num_glosses=9"])
