"""The learning tests' common run: fine-tune through ``slp-finetune``, then evaluate the best checkpoint with
``--eval-only``; both runs' ``metrics.json`` and the table the training run printed come back."""

from __future__ import annotations

import json
from pathlib import Path

from finetune.cli import main as finetune


def finetune_and_reevaluate(task: str, config: str, out: Path, overrides: list[str], capsys) -> tuple[dict, dict, str]:
    """(metrics of the training run, metrics of the --eval-only run of its best checkpoint, printed table)."""
    finetune(["--task", task, "--config", config, f"output={out / 'run'}", *overrides])
    table = capsys.readouterr().out
    trained = json.loads((out / "run" / "metrics.json").read_text())
    finetune(["--task", task, "--config", config, f"output={out / 'eval'}", *overrides,
              "--eval-only", "--checkpoint", str(out / "run" / "best.safetensors")])
    capsys.readouterr()
    return trained, json.loads((out / "eval" / "metrics.json").read_text()), table
