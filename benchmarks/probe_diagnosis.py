"""Why can a pre-trained encoder score below a random one under a linear probe? Measures on the encoders that
``benchmarks/ablations.py`` saved (and the random initialisation of each seed):

- the probe's top-1 on the test signers as the probe varies: features averaged over the whole clip or over 4
  stretches of it, fitted on 2 training signers or on all of them;
- what the clip-mean features hold: the share of their (standardised) variance explained by the gloss and by the
  signer (between-group variance / total), and their effective dimension (participation ratio of the covariance's
  eigenvalues, (Σλ)² / Σλ²);
- next to it, the fine-tuned top-1 that ablations.py measured.

    python benchmarks/probe_diagnosis.py --ablations runs/ablations
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from finetune import islr  # noqa: E402
from finetune.data import load_split  # noqa: E402
from finetune.linear_probe import pooled_features, probe_accuracy  # noqa: E402
from pretrain.config import PretrainRunConfig  # noqa: E402
from slp.config import from_dict, load_config  # noqa: E402
from slp.data.shards import write_summary  # noqa: E402
from slp.models.pretraining import PretrainingModel  # noqa: E402
from slp.models.sign_encoder import SignPoseEncoder  # noqa: E402
from slp.synthetic import SyntheticConfig  # noqa: E402
from slp.synthetic.corpus import DATASET  # noqa: E402


def explained_share(features: torch.Tensor, groups: list[str]) -> float:
    """Between-group variance over total variance of standardised features (1: the groups are all there is)."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    between = torch.zeros(())
    for g in set(groups):
        rows = x[[i for i, h in enumerate(groups) if h == g]]
        between = between + len(rows) * rows.mean(0).pow(2).sum()
    return float(between / x.pow(2).sum())


def effective_dimension(features: torch.Tensor) -> float:
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.T)).clamp(min=0)
    return float(eigenvalues.sum() ** 2 / eigenvalues.pow(2).sum())


def diagnose(encoder: torch.nn.Module, train: list, test: list, num_classes: int, seed: int) -> dict:
    two = sorted({s.meta.signer for s in train})[:2]
    ytr = torch.tensor([s.meta.label for s in train])
    yte = torch.tensor([s.meta.label for s in test])
    row = {}
    for segments in (1, 4):
        ftr, fte = pooled_features(encoder, train, segments), pooled_features(encoder, test, segments)
        pick = torch.tensor([s.meta.signer in two for s in train])
        row[f"probe_{segments}seg_2signers"] = 100 * probe_accuracy(ftr[pick], ytr[pick], fte, yte, num_classes,
                                                                    seed=seed)
        row[f"probe_{segments}seg_all"] = 100 * probe_accuracy(ftr, ytr, fte, yte, num_classes, seed=seed)
        if segments == 1:
            row["gloss_share"] = explained_share(ftr, [str(s.meta.label) for s in train])
            row["signer_share"] = explained_share(ftr, [s.meta.signer for s in train])
            row["effective_dim"] = effective_dimension(ftr)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ablations", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--variants", nargs="+", default=["default", "pr-only", "stc-only"])
    parser.add_argument("--pretrain-config", default="configs/pretrain/tiny.yaml")
    args = parser.parse_args(argv)
    summary_path = args.ablations / "corpus" / "summary.json"
    corpus_cfg = from_dict(SyntheticConfig, json.loads(summary_path.read_text())["config"])
    shards = [str(args.ablations / "corpus" / "shards" / "*.tar")]
    train, test = (load_split(shards, DATASET, split, islr.keep) for split in ("train", "test"))
    rows = []
    for result_path in sorted(args.ablations.glob("runs/*/seed*/result.json")):
        result = json.loads(result_path.read_text())
        if result["variant"] not in args.variants or not (result_path.parent / "encoder").is_dir():
            continue
        encoder = SignPoseEncoder.from_pretrained(result_path.parent / "encoder")
        rows.append({"encoder": result["variant"], "seed": result["seed"], "finetune": result.get("finetune"),
                     **diagnose(encoder, train, test, corpus_cfg.num_glosses, result["seed"])})
    for seed in sorted({r["seed"] for r in rows}):
        torch.manual_seed(seed)  # the initialisation ablations.py fine-tunes from at α = 0
        run = load_config(PretrainRunConfig, REPO / args.pretrain_config)
        encoder = PretrainingModel(run.model, run.loss).encoder
        rows.append({"encoder": "random init", "seed": seed, **diagnose(encoder, train, test, corpus_cfg.num_glosses,
                                                                        seed)})
    columns = ["probe_1seg_2signers", "probe_1seg_all", "probe_4seg_2signers", "probe_4seg_all", "gloss_share",
               "signer_share", "effective_dim", "finetune"]
    print("| encoder | seed | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 2))
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r.get(c), float) else "-" for c in columns]
        print(f"| {r['encoder']} | {r['seed']} | " + " | ".join(cells) + " |")
    summary = {"rows": rows}
    write_summary(args.ablations / "probe_diagnosis.json", summary)
    return summary


if __name__ == "__main__":
    main()
