"""ISLR fine-tuning end to end through slp-finetune: learns, reports the paper's layout, evaluates a checkpoint,
and a pre-trained encoder beats the same head trained from scratch with the same budget."""

from __future__ import annotations

import json

import pytest

from finetune.cli import main as finetune

pytestmark = pytest.mark.slow


def _finetune(tmp_path, corpus, name, *extra):
    finetune(["--task", "islr", "--config", "configs/finetune/islr/synthetic.yaml",
              f"data.shards=[{corpus}/shards/*.tar]", f"output={tmp_path / name}", "optim.epochs=4",
              "optim.step_size=3", *extra])
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_pretrained_beats_scratch_and_eval_only_reproduces(tmp_path, pretrained_tiny, capsys):
    corpus_cfg, corpus, encoder = pretrained_tiny
    scratch = _finetune(tmp_path, corpus, "scratch")
    pretrained = _finetune(tmp_path, corpus, "pretrained", "--pretrained", str(encoder))
    table = capsys.readouterr().out
    assert "P-I Top-1" in table and "P-C Top-5" in table
    chance = 100 / corpus_cfg.num_glosses
    s, p = scratch["test"]["per_instance_top1"], pretrained["test"]["per_instance_top1"]
    print(f"ISLR test top-1 on held-out signers: pre-trained {p:.1f}, scratch {s:.1f} (chance {chance:.1f})")
    assert s > 2 * chance  # the head learns even from scratch
    assert p > s
    assert len(pretrained["history"]) == 4 and (tmp_path / "pretrained" / "best.safetensors").is_file()
    finetune(["--task", "islr", "--config", "configs/finetune/islr/synthetic.yaml",
              f"data.shards=[{corpus}/shards/*.tar]", f"output={tmp_path / 'eval'}", "--pretrained", str(encoder),
              "--eval-only", "--checkpoint", str(tmp_path / "pretrained" / "best.safetensors")])
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["test"] == pretrained["test"]
