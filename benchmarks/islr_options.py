"""The ISLR options (NLA-SLR, StepNet, the keypoint-heatmap backbone) on the hard synthetic corpus, in the layout of
NLA-SLR's Tables 5-6 and StepNet's Table 7a, as mean ± std over seeds.

Every row trains ISLR from scratch (no pre-training: the whole model learns at the head's rate) through
``slp-finetune``'s own ``run_task`` on the isolated signs of the corpus that ``benchmarks/ablations.py`` builds at
the same ``--size`` (``configs/synthetic/hard.yaml``), with the same budget, and reports the per-instance and
per-class top-1 / top-5 on the held-out test signers of the checkpoint best on the dev signer. The pose encoder
is the ablations' one at that size (``tiny`` on CPU, ``base`` on GPU).

- NLA-SLR Table 5: language-aware label smoothing (Lang-LS) and sign mixup (intra- + inter-modality) on the pose
  encoder.
- NLA-SLR Table 6: intra- and inter-modality mixup, every row with Lang-LS as in the paper (its first row is Table 5's
  Lang-LS row). Inter-modality mixup is the paper's full one: auxiliary classifier and its integration (Table 7).
- StepNet Table 7a: the SignPoseEncoder without StepNet and with its spatial, temporal or both branches
  (``islr.stepnet.spatial`` / ``temporal``), then NLA-SLR's keypoint-heatmap backbone
  (``configs/finetune/islr/synthetic_heatmap.yaml``) on one clip and on VKNet's two. StepNet's parts are the pose
  encoder's streams and hand points, so the heatmap backbone has its baseline rows only.

Gloss embeddings: among the hard corpus's manually near-identical gloss pairs some have related meanings (cold /
warm, go / come). NLA-SLR embeds glosses with fastText, in which such words are neighbours; the tiny mBART stand-in
is randomly initialised and knows no meaning, so language-aware smoothing and inter-modality mixup would read noise.
By default (``--gloss-vectors lexicon``) the NLA-SLR rows read a word-vector file written here with fastText's
relevant property: each related pair of the lexicon shares most of its vector (cosine 0.8), other words are
independent random vectors. ``--gloss-vectors text-model`` embeds the glosses with the text encoder instead
(``--text-model``, e.g. the real mBART at ``--size gpu``).

Shared rows (Table 6's first and last rows are Table 5's; Table 7a's first is Table 5's baseline) run once per seed,
and each run's result is kept under ``OUT/runs``, so a second call reuses every finished run. Prints each table
and writes ``OUT/islr_options.json`` and ``OUT/table_<table>.png``.

    python benchmarks/islr_options.py --seeds 0 1 2 --jobs 2 --out runs/islr_options
    python benchmarks/islr_options.py --tables "StepNet 7a" --variants plain heatmap --seeds 0 --epochs 1
    python benchmarks/islr_options.py --size gpu --out runs/islr_options_gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.ablations import SIZES as CORPUS_SIZES  # noqa: E402
from benchmarks.ablations import Table, Variant, plot_table, prepare, render_table, run_grid  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.trainer import run_task  # noqa: E402
from pretrain.config import PretrainRunConfig  # noqa: E402
from slp.config import load_config  # noqa: E402
from slp.data.shards import write_summary  # noqa: E402
from slp.synthetic.corpus import LEXICON, RELATED_WORDS  # noqa: E402

CONFIGS = REPO / "configs" / "finetune" / "islr"


@dataclass(frozen=True)
class Option(Variant):
    """A row: ``overrides`` of the fine-tuning ``config`` (a file of configs/finetune/islr/), trained from scratch."""

    pretrain: bool = False
    config: str = "synthetic.yaml"


LANG_LS = ("islr.nla.label_smoothing=true",)
INTRA = ("islr.nla.intra_mixup=true",)
INTER = ("islr.nla.inter_mixup=true", "islr.nla.classifier_integration=true")
STEPNET = ("islr.stepnet.enabled=true",)
HEATMAP = "synthetic_heatmap.yaml"

PLAIN = Option("plain")
WITH_LANG_LS = Option("lang-ls", LANG_LS)
NLA_SLR = Option("nla-slr", LANG_LS + INTRA + INTER)
TABLES = {t.number: t for t in (
    Table("NLA-SLR 5", "Lang-LS and sign mixup (intra + inter), pose encoder", ("Lang-LS", "Sign Mixup"), (
        (("", ""), PLAIN),
        (("✓", ""), WITH_LANG_LS),
        (("", "✓"), Option("mixup", INTRA + INTER)),
        (("✓", "✓"), NLA_SLR))),
    Table("NLA-SLR 6", "sign mixup, every row with Lang-LS, pose encoder", ("Intra-Modality", "Inter-Modality"), (
        (("", ""), WITH_LANG_LS),
        (("✓", ""), Option("lang-ls+intra", LANG_LS + INTRA)),
        (("", "✓"), Option("lang-ls+inter", LANG_LS + INTER)),
        (("✓", "✓"), NLA_SLR))),
    Table("StepNet 7a", "StepNet's two branches; backbones", ("Backbone", "w/ Spatial", "w/ Temporal"), (
        (("SignPoseEncoder", "", ""), PLAIN),
        (("SignPoseEncoder", "✓", ""), Option("stepnet-spatial", (*STEPNET, "islr.stepnet.temporal=false"))),
        (("SignPoseEncoder", "", "✓"), Option("stepnet-temporal", (*STEPNET, "islr.stepnet.spatial=false"))),
        (("SignPoseEncoder", "✓", "✓"), Option("stepnet", STEPNET)),
        (("Keypoint heatmaps (S3D)", "", ""), Option("heatmap", ("islr.heatmap.two_clip=false",), config=HEATMAP)),
        (("Keypoint heatmaps (S3D, VKNet two-clip)", "", ""), Option("heatmap-two-clip", config=HEATMAP)))),
)}
METRICS = {"per_instance_top1": "Per-instance Top-1 (%)", "per_instance_top5": "Per-instance Top-5 (%)",
           "per_class_top1": "Per-class Top-1 (%)", "per_class_top5": "Per-class Top-5 (%)"}
TABLE_METRICS = {"NLA-SLR 5": METRICS, "NLA-SLR 6": METRICS, "StepNet 7a": {"per_instance_top1": "Top-1 (%)"}}


@dataclass
class Size:
    finetune: list[str]  # overrides of every row's config
    heatmap: list[str] = field(default_factory=list)  # and of the heatmap rows'


SIZES = {
    # The configs' 8 epochs; StepNet at the tiny encoder's stream width (its default, 512, is the paper's on a
    # 1024-d I3D feature).
    "cpu": Size(finetune=["islr.stepnet.width=128"]),
    # NLA-SLR's heatmaps (112 × 112, σ 4, VKNet's 64 + 32 frames) and S3D-like widths.
    "gpu": Size(finetune=["optim.epochs=60", "optim.step_size=20", "optim.batch_size=64", "mixed_precision=bf16"],
                heatmap=["data.num_frames=64", "islr.heatmap.size=112", "islr.heatmap.sigma=4.0",
                         "islr.heatmap.channels=[64,128,256,512]", "optim.batch_size=16"]),
}


def write_lexicon_vectors(path: Path, dim: int = 64, seed: int = 0) -> Path:
    """A word-vector file of the corpus lexicon's English words in which each pair of :data:`RELATED_WORDS` has
    cosine 0.8 (a shared vector plus half as much of its own) and every other pair is independent."""
    rng = np.random.default_rng(seed)
    index = {entry[0]: i for i, entry in enumerate(LEXICON)}
    vectors = rng.standard_normal((len(LEXICON), dim))
    for a, b in RELATED_WORDS:
        shared = rng.standard_normal(dim)
        for word in (a, b):
            vectors[index[word]] = shared + 0.5 * vectors[index[word]]
    path.write_text("".join(f"{entry[0]} {' '.join(f'{v:.6f}' for v in vector)}\n"
                            for entry, vector in zip(LEXICON, vectors)), encoding="utf-8")
    return path


def run_option(option: Option, seed: int, common: list[str], size: Size, encoder_config: str, out: Path) -> dict:
    """Train and evaluate one row with one seed; cached in ``OUT/runs``."""
    overrides = [*common, *size.finetune, *(size.heatmap if option.config == HEATMAP else ()), *option.overrides]
    digest = hashlib.sha1(json.dumps([option.config, overrides, encoder_config]).encode()).hexdigest()[:8]
    run_dir = out / "runs" / f"{option.label}-{digest}" / f"seed{seed}"
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    began = time.time()
    cfg = load_config(FinetuneConfig, CONFIGS / option.config, [*overrides, f"seed={seed}",
                                                                  f"output={run_dir / 'finetune'}"])
    cfg.encoder = load_config(PretrainRunConfig, REPO / encoder_config).model.encoder
    metrics = run_task(cfg)
    result = {"variant": option.label, "seed": seed, "config": option.config, "overrides": overrides,
              **metrics["test"], "dev": metrics["dev"], "seconds": round(time.time() - began, 1)}
    write_summary(run_dir / "result.json", result)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", choices=list(SIZES), default="cpu")
    parser.add_argument("--epochs", type=int, help="training epochs per run (default: the size's); the step "
                        "schedule stays the config's (lr × 0.1 every 6 epochs on CPU)")
    parser.add_argument("--variants", nargs="+", help="only these row labels of the tables (a slice)",
                        choices=list({v.label: v for t in TABLES.values() for _, v in t.rows}))
    parser.add_argument("--gloss-vectors", choices=["lexicon", "text-model"], default="lexicon",
                        help="NLA-SLR's gloss embeddings: the lexicon's word vectors or the text encoder")
    parser.add_argument("--text-model", default="", help="mBART name or folder (default: a tiny stand-in)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each (CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/islr_options"))
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    if args.epochs:
        size = dataclasses.replace(size, finetune=[*size.finetune, f"optim.epochs={args.epochs}"])
    args.out.mkdir(parents=True, exist_ok=True)
    corpus_size = CORPUS_SIZES[args.size]
    corpus_cfg, corpus, text_model = prepare(args.out, corpus_size, args.text_model)
    gloss_source = (f"islr.nla.word_vectors={write_lexicon_vectors(args.out / 'lexicon_vectors.txt')}"
                    if args.gloss_vectors == "lexicon" else f"islr.nla.text_model={text_model}")
    # From scratch, the encoder is no pre-trained part to spare: it learns at the head's rate.
    common = [f"data.shards={json.dumps([str(corpus / 'shards' / '*.tar')])}", "optim.encoder_lr_scale=1.0",
              gloss_source]

    tables = [TABLES[n] for n in args.tables]
    options = {v.label: v for t in tables for _, v in t.rows if not args.variants or v.label in args.variants}
    # The costliest rows (StepNet, the heatmap backbone: last in the tables) first: workers idle less at the end.
    runs = [(option, seed, common, size, corpus_size.pretrain, args.out)
            for option in reversed(options.values()) for seed in args.seeds]
    began = time.time()
    results: dict[str, list[dict]] = {label: [] for label in options}
    for result in run_grid(run_option, runs, args.jobs, "ISLR option runs"):
        results[result["variant"]].append(result)
    printed = []
    for table in tables:
        shown = Table(table.number, table.title, table.columns,
                      tuple(row for row in table.rows if row[1].label in options))
        text = render_table(shown, results, TABLE_METRICS[table.number])
        printed.append(text)
        print("\n" + text)
        # One bar group per row, named by its label (the tick cells of the paper's columns read poorly as names).
        by_label = Table(table.number, table.title, ("",), tuple(((v.label,), v) for _, v in shown.rows))
        plot_table(by_label, results, TABLE_METRICS[table.number],
                   args.out / f"table_{table.number.replace(' ', '_').replace('-', '_')}.png")
    summary = {"size": args.size, "seeds": args.seeds, "finetune_overrides": size.finetune,
               "heatmap_overrides": size.heatmap, "gloss_vectors": args.gloss_vectors,
               "corpus": dataclasses.asdict(corpus_cfg), "seconds": round(time.time() - began, 1),
               "tables": printed, "results": results}
    write_summary(args.out / "islr_options.json", summary)
    return summary


if __name__ == "__main__":
    main()
