"""The learning tests' common run: fine-tune through ``slp-finetune``, then evaluate the best checkpoint with
``--eval-only``; both runs' ``metrics.json`` and the table the training run printed come back."""

from __future__ import annotations

import json
from pathlib import Path

from finetune.cli import main as finetune
from tests.margins import assert_margin


def finetune_and_reevaluate(task: str, config: str, out: Path, overrides: list[str], capsys) -> tuple[dict, dict, str]:
    """(metrics of the training run, metrics of the --eval-only run of its best checkpoint, printed table)."""
    finetune(["--task", task, "--config", config, f"output={out / 'run'}", *overrides])
    table = capsys.readouterr().out
    trained = json.loads((out / "run" / "metrics.json").read_text())
    finetune(["--task", task, "--config", config, f"output={out / 'eval'}", *overrides,
              "--eval-only", "--checkpoint", str(out / "run" / "best.safetensors")])
    capsys.readouterr()
    return trained, json.loads((out / "eval" / "metrics.json").read_text()), table


RETRIEVAL_KEYS = ("t2v_r1", "t2v_r5", "v2t_r1", "v2t_r5", "t2v_medr", "v2t_medr")


def assert_retrieval_beats(result: dict, reference: dict, pairs: int, what: str, *, r1_chance: float,
                           r1_margin: float, r5_chance: float, r5_margin: float) -> None:
    """Print ``result`` against ``reference`` (test metrics of two retrieval runs on ``pairs`` pairs), then check, in
    both directions, that R@1 beats ``r1_chance`` × chance and the reference by ``r1_margin`` points, R@5 beats
    ``r5_chance`` × chance and the reference by ``r5_margin``, and the median rank halves."""
    chance = {k: 100 * k / pairs for k in (1, 5)}
    print(f"\nretrieval on held-out signers ({pairs} test pairs), {what} (chance R@1 {chance[1]:.1f}, "
          f"R@5 {chance[5]:.1f}):")
    for key in RETRIEVAL_KEYS:
        print(f"  {key}: {result[key]:.1f} vs {reference[key]:.1f}")
    for d in ("t2v", "v2t"):
        assert_margin(f"retrieval {d} R@1 ({what}) vs {r1_chance}x chance", result[f"{d}_r1"], r1_chance * chance[1])
        assert_margin(f"retrieval {d} R@1 ({what}) vs reference", result[f"{d}_r1"], reference[f"{d}_r1"],
                      r1_margin)
        assert_margin(f"retrieval {d} R@5 ({what}) vs {r5_chance}x chance", result[f"{d}_r5"], r5_chance * chance[5])
        assert_margin(f"retrieval {d} R@5 ({what}) vs reference", result[f"{d}_r5"], reference[f"{d}_r5"],
                      r5_margin)
        assert_margin(f"retrieval {d} half the reference's MedR ({what})", reference[f"{d}_medr"] / 2,
                      result[f"{d}_medr"])
