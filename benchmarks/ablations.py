"""The paper's pre-training ablations (Tables XII-XIX) on the hard synthetic corpus, as mean ± std over seeds.

Each variant of a table is a set of overrides of the pre-training config (the ``tiny`` model at CPU size, ``base``
at GPU size). For every variant and seed the harness pre-trains on one device in this process
(:func:`pretrain.single_device.pretrain_on_one_device`), then evaluates the encoder on the corpus's
isolated signs of held-out signers in two ways:

- ``probe``: a linear probe on the frozen encoder's features (``finetune.linear_probe``), fitted on the training
  signers;
- ``finetune``: ISLR fine-tuned from the encoder through ``slp-finetune``'s own ``run_task`` (the paper's protocol),
  per-instance top-1 on the test signers.

α = 0 (Table XIII) is the same ISLR model fine-tuned from random initialisation. Variants that several tables share
(the paper's default row: PR + STC, both streams, α = 100 %, λ = 1, s = 4, m = 40 %, fine-grained, GCN) run once per
seed. Each run's result is kept under ``OUT/runs``, so a second call reuses every finished run (grow ``--seeds``,
add tables). Prints each table in the paper's layout and writes ``OUT/ablations.json`` and ``OUT/table_<N>.png``.

    python benchmarks/ablations.py --tables XIII XIV XV --seeds 0 1 2 --out runs/ablations
    python benchmarks/ablations.py --size gpu --text-model facebook/mbart-large-cc25 --out runs/ablations_gpu
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from finetune import islr  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.data import load_split  # noqa: E402
from finetune.linear_probe import linear_probe  # noqa: E402
from finetune.trainer import run_task  # noqa: E402
from pretrain.config import PretrainRunConfig  # noqa: E402
from pretrain.single_device import pretrain_on_one_device  # noqa: E402
from slp.config import load_config  # noqa: E402
from slp.data.shards import write_summary  # noqa: E402
from slp.models.pretraining import PretrainingModel  # noqa: E402
from slp.synthetic import SyntheticConfig, corpus_texts, write_synthetic_corpus  # noqa: E402
from slp.synthetic.corpus import DATASET  # noqa: E402
from slp.threads import set_process_threads, threads_per_process, torch_threads  # noqa: E402


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: tuple[str, ...] = ()  # of the pre-training config
    pretrain: bool = True  # False: no pre-training (α = 0)


@dataclass(frozen=True)
class Table:
    number: str
    title: str
    columns: tuple[str, ...]  # the paper's leading columns
    rows: tuple[tuple[tuple[str, ...], Variant], ...]  # (cells of the leading columns, variant)


DEFAULT = Variant("default")
NO_PR, NO_STC = ("loss.use_pr=false",), ("loss.use_stc=false",)
TABLES = {t.number: t for t in (
    Table("XII", "objective weight λ", ("λ",), tuple(
        ((lam,), Variant(f"lambda={lam}", (f"loss.lambda_stc={lam}",)) if lam != "1.0" else DEFAULT)
        for lam in ("0.1", "0.5", "1.0", "1.5", "2.0"))),
    Table("XIII", "pre-training data fraction α", ("α",), (
        (("0%",), Variant("scratch", pretrain=False)),
        (("25%",), Variant("alpha=0.25", ("data.data_fraction=0.25",))),
        (("50%",), Variant("alpha=0.5", ("data.data_fraction=0.5",))),
        (("75%",), Variant("alpha=0.75", ("data.data_fraction=0.75",))),
        (("100%",), DEFAULT))),
    Table("XIV", "pretext tasks", ("PR", "STC"), (
        (("✓", ""), Variant("pr-only", NO_STC)),
        (("", "✓"), Variant("stc-only", NO_PR)),
        (("✓", "✓"), DEFAULT))),
    Table("XV", "sign features", ("Manual", "Non-manual"), (
        (("✓", ""), Variant("manual-only", ("model.encoder.use_non_manual=false",))),
        (("", "✓"), Variant("non-manual-only", ("model.encoder.use_manual=false",))),
        (("✓", "✓"), DEFAULT))),
    Table("XVI", "slide window size s", ("s",), tuple(
        ((s,), Variant(f"window={s}", (f"model.pool_window={s}",)) if s != "4" else DEFAULT)
        for s in ("1", "2", "4", "8", "16"))),
    # m = 0 is the paper's first row: pre-training without masked pose modelling.
    Table("XVII", "mask ratio m", ("m",), (
        (("0%",), Variant("stc-only", NO_PR)),
        *(((f"{round(m * 100)}%",), Variant(f"mask={m}", (f"loss.mask_ratio={m}",)) if m != 0.4 else DEFAULT)
          for m in (0.2, 0.4, 0.6, 0.8)))),
    Table("XVIII", "sign-text similarity", ("",), (
        (("Coarse-grained",), Variant("coarse", ("loss.similarity=coarse",))),
        (("Fine-grained",), DEFAULT))),
    Table("XIX", "pose embedding", ("",), (
        (("Linear",), Variant("linear-embedding", ("model.encoder.embedding.kind=linear",))),
        (("GCN",), DEFAULT))),
)}
METRICS = {"probe": "ISLR probe top-1 (%)", "finetune": "ISLR fine-tuned top-1 (%)"}


@dataclass
class Size:
    corpus: list[str]  # overrides of configs/synthetic/hard.yaml
    pretrain: str  # pre-training config
    steps: int
    batch_size: int
    finetune: list[str] = field(default_factory=list)  # overrides of configs/finetune/islr/synthetic.yaml


SIZES = {
    # The grid of Tables XIII-XV with 3 seeds in about 40 minutes on 2 cores (--jobs 2).
    "cpu": Size(corpus=[], pretrain="configs/pretrain/tiny.yaml", steps=250, batch_size=16,
                finetune=["optim.epochs=5", "optim.step_size=4"]),
    # A cluster's single GPU: the paper's width (base) on every gloss of the lexicon and more signers.
    "gpu": Size(corpus=["num_glosses=60", "num_signers=40", "test_signers=8", "dev_signers=2", "repetitions=4",
                        "sentences_per_signer=100"],
                pretrain="configs/pretrain/base.yaml", steps=20000, batch_size=128,
                finetune=["optim.epochs=60", "optim.step_size=20", "optim.batch_size=64"]),
}


def prepare(out: Path, size: Size, text_model: str) -> tuple[SyntheticConfig, Path, str]:
    """The hard corpus and (unless ``text_model`` names one) the tiny mBART stand-in built on its texts."""
    corpus_cfg = load_config(SyntheticConfig, REPO / "configs" / "synthetic" / "hard.yaml", size.corpus)
    corpus = out / "corpus"
    if not (corpus / "summary.json").is_file():
        write_synthetic_corpus(corpus, corpus_cfg)
    elif json.loads((corpus / "summary.json").read_text())["config"] != json.loads(json.dumps(
            dataclasses.asdict(corpus_cfg))):
        raise SystemExit(f"{corpus} holds a corpus of another config: use another --out for these settings")
    if not text_model:
        from slp.text.tiny import build_tiny_mbart

        text_model = str(out / "tiny_mbart")
        if not (Path(text_model) / "config.json").is_file():
            build_tiny_mbart(text_model, corpus_texts(corpus_cfg))
    return corpus_cfg, corpus, text_model


def run_variant(variant: Variant, seed: int, args, size: Size, corpus_cfg: SyntheticConfig, corpus: Path,
                text_model: str, device: torch.device) -> dict:
    """Pre-train (unless α = 0) and evaluate one variant with one seed; cached in ``OUT/runs``."""
    digest = hashlib.sha1(json.dumps([variant.overrides, variant.pretrain, args.evaluation, args.segments,
                                      dataclasses.asdict(size)]).encode()).hexdigest()[:8]
    run_dir = args.out / "runs" / f"{variant.label}-{digest}" / f"seed{seed}"
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    began = time.time()
    shards = [str(corpus / "shards" / "*.tar")]
    overrides = [f"data.shards={json.dumps(shards)}", f"text.name_or_path={text_model}", f"seed={seed}",
                 f"data.seed={seed}", f"data.batch_size={size.batch_size}", f"output={run_dir / 'pretrain'}",
                 *variant.overrides]
    cfg = load_config(PretrainRunConfig, REPO / size.pretrain, overrides)
    if variant.pretrain:
        encoder = pretrain_on_one_device(cfg, size.steps, device).encoder
    else:
        torch.manual_seed(seed)
        encoder = PretrainingModel(cfg.model, cfg.loss).encoder.to(device)
    result = {"variant": variant.label, "seed": seed, "overrides": list(variant.overrides)}
    if "probe" in args.evaluation:
        train, test = (load_split(shards, DATASET, split, islr.keep) for split in ("train", "test"))
        result["probe"] = 100 * linear_probe(encoder, train, test, corpus_cfg.num_glosses, segments=args.segments,
                                             seed=seed)
    if "finetune" in args.evaluation:
        encoder_dir = None
        if variant.pretrain:
            encoder_dir = str(encoder.save_pretrained(run_dir / "encoder"))
        ft = load_config(FinetuneConfig, REPO / "configs" / "finetune" / "islr" / "synthetic.yaml", [
            f"data.shards={json.dumps(shards)}", f"output={run_dir / 'finetune'}", f"seed={seed}", *size.finetune])
        if not variant.pretrain:
            # Scratch: the pre-training architecture, randomly initialised, learning at the head's rate (the 0.1
            # scale is for an encoder that already learnt).
            ft.encoder = cfg.model.encoder
            ft.optim.encoder_lr_scale = 1.0
        result["finetune"] = run_task(ft, pretrained=encoder_dir)["test"]["per_instance_top1"]
    result["seconds"] = round(time.time() - began, 1)
    write_summary(run_dir / "result.json", result)
    return result


def run_grid(job: Callable[..., dict], runs: Sequence[tuple], jobs: int, desc: str) -> list[dict]:
    """``job(*run)`` for every run, results in order; with ``jobs`` > 1 that many side by side in spawned processes.
    On CPU each job takes its share of the cores (``slp.threads``); one job runs in this process on that share and
    gives the caller back its own thread count afterwards."""
    on_gpu = torch.cuda.is_available()
    threads = torch.get_num_threads() if on_gpu else threads_per_process(jobs)
    if jobs <= 1:
        with torch_threads(threads):
            return [job(*run) for run in tqdm(runs, desc=desc, unit="run")]
    results: list[dict] = [{}] * len(runs)
    # On CPU a worker's share goes into its OMP_NUM_THREADS too: code that sizes its own threads by the rule
    # (slp-finetune's run_task) then keeps to the share, instead of taking every core beside the other jobs.
    initializer, initargs = (torch.set_num_threads, (threads,)) if on_gpu else (set_process_threads, (jobs,))
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_job_process,
                             initargs=(os.getpid(), initializer, initargs)) as pool:
        futures = {pool.submit(job, *run): k for k, run in enumerate(runs)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="run"):
            results[futures[future]] = future.result()
    return results


#: prctl(2)'s option that has the kernel signal a process when its parent ends.
PR_SET_PDEATHSIG = 1


def _start_job_process(harness: int, initializer: Callable, initargs: tuple) -> None:
    """A job process ends with the harness that started it: a job runs for up to an hour, and one left behind by a
    killed harness would keep a core and the lock of the pre-training it runs, so that the next call waits on it
    (Linux; elsewhere a job finishes its run first)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != harness:  # the harness was gone before the request
            os._exit(1)
    initializer(*initargs)


def summarise(results: list[dict], metric: str) -> tuple[float, float, int]:
    values = [r[metric] for r in results if metric in r]
    if not values:
        return float("nan"), float("nan"), 0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def render_table(table: Table, results: dict[str, list[dict]], metrics: dict[str, str]) -> str:
    """``metrics``: result key → column title."""
    header = [*table.columns, *metrics.values()]
    lines = [f"TABLE {table.number}: {table.title} (hard synthetic corpus, mean ± std over seeds)",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells, variant in table.rows:
        values = []
        for m in metrics:
            mean, std, n = summarise(results[variant.label], m)
            values.append(f"{mean:.1f} ± {std:.1f} (n={n})")
        lines.append("| " + " | ".join([*cells, *values]) + " |")
    return "\n".join(lines)


def plot_table(table: Table, results: dict[str, list[dict]], metrics: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(cells: tuple[str, ...], variant: Variant) -> str:
        # A ticked column is named by its title, any other cell (a value, a backbone) by itself.
        parts = [col if cell == "✓" else cell for col, cell in zip(table.columns, cells) if cell]
        return " + ".join(parts) or variant.label

    labels = [label(cells, variant) for cells, variant in table.rows]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(labels) * len(metrics), 3.6))
    width = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        stats = [summarise(results[v.label], m) for _, v in table.rows]
        xs = [i + (k - (len(metrics) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=metrics[m])
        for i, (_, v) in enumerate(table.rows):
            values = [r[m] for r in results[v.label] if m in r]  # (a row may lack a metric: no probe, say)
            ax.scatter([xs[i]] * len(values), values, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("%")
    ax.set_title(f"Table {table.number}: {table.title}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", choices=list(SIZES), default="cpu")
    parser.add_argument("--evaluation", nargs="+", choices=list(METRICS), default=["probe", "finetune"])
    parser.add_argument("--segments", type=int, default=4, help="time segments the probe's features keep")
    parser.add_argument("--steps", type=int, help="pre-training steps per run (default: the size's)")
    parser.add_argument("--corpus-overrides", nargs="*", default=[], help="key=value of configs/synthetic/hard.yaml")
    parser.add_argument("--finetune-overrides", nargs="*", default=[], help="key=value of the ISLR fine-tuning")
    parser.add_argument("--variants", nargs="+", help="only these row labels of the tables (a CI slice)")
    parser.add_argument("--text-model", default="", help="mBART name or folder (default: a tiny stand-in)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, each on its share of the cores (CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    args = parser.parse_args(argv)
    base = SIZES[args.size]
    size = dataclasses.replace(base, steps=args.steps or base.steps, corpus=base.corpus + args.corpus_overrides,
                               finetune=base.finetune + args.finetune_overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    corpus_cfg, corpus, text_model = prepare(args.out, size, args.text_model)

    tables = [TABLES[n] for n in args.tables]
    variants = {v.label: v for t in tables for _, v in t.rows if not args.variants or v.label in args.variants}
    runs = [(v, seed) for v in variants.values() for seed in args.seeds]
    results: dict[str, list[dict]] = {label: [] for t in tables for _, v in t.rows for label in [v.label]}
    began = time.time()
    for (variant, _), result in zip(runs, run_grid(run_variant, [(v, seed, args, size, corpus_cfg, corpus,
                                                                  text_model, device) for v, seed in runs],
                                                   args.jobs, "ablation runs")):
        results[variant.label].append(result)
    printed = []
    for table in tables:
        shown = Table(table.number, table.title, table.columns,
                      tuple(row for row in table.rows if row[1].label in variants))
        metrics = {m: METRICS[m] for m in args.evaluation}
        text = render_table(shown, results, metrics)
        printed.append(text)
        print("\n" + text)
        plot_table(shown, results, metrics, args.out / f"table_{table.number}.png")
    summary = {"size": args.size, "steps": size.steps, "seeds": args.seeds, "evaluation": args.evaluation,
               "probe_segments": args.segments, "corpus": dataclasses.asdict(corpus_cfg),
               "seconds": round(time.time() - began, 1), "tables": printed,
               "results": {label: rs for label, rs in results.items() if rs}}
    write_summary(args.out / "ablations.json", summary)
    return summary


if __name__ == "__main__":
    main()
