"""``slp-finetune``: fine-tune a pre-trained SignPoseEncoder on a downstream task and report its metrics.

    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only \
        --checkpoint runs/finetune/islr_wlasl/best.safetensors
    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only \
        --checkpoint runs/finetune/islr_wlasl/model          # a head folder (a run's <output>/model)
    slp-finetune --task cslr --config configs/finetune/cslr/phoenix14.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task slt --config configs/finetune/slt/phoenix14t.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task retrieval --config configs/finetune/retrieval/csl_daily.yaml --pretrained ...
    accelerate launch --num_processes 8 -m finetune.cli --task islr --config ...      # distributed
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_machines 1 --num_processes 2 -m finetune.cli ...  # CPU

Training and --eval-only alike run on any number of processes; the evaluation metrics do not depend on it.

Without --pretrained the encoder is built from the config's `encoder` section and trained from scratch.

A training run ends with <output>/model, a self-contained head folder (weights, config, head.json, the text
model a head reads, a model card) that slp-predict and finetune.export.load_finetuned load, also from the Hub. With
a head folder as --checkpoint, the head is the folder's; --config gives the data, batch size and output.
"""

from __future__ import annotations

import argparse
import sys

from finetune.config import FinetuneConfig
from finetune.tasks import registered_tasks
from finetune.trainer import run_task
from slp.cli_errors import ArgumentParser, UserError, file_problem, load_user_config, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="slp-finetune", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=list(registered_tasks()))
    parser.add_argument("--config", required=True, help="configs/finetune/<task>/<dataset>.yaml")
    parser.add_argument("--pretrained", help="directory of a SignPoseEncoder.save_pretrained export")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint on dev and test")
    parser.add_argument("--checkpoint",
                        help="fine-tuned checkpoint (best.safetensors) or head folder (<output>/model) to evaluate")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    return parser


def _main(argv: list[str] | None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")
    if args.pretrained and (problem := file_problem(f"{args.pretrained}/config.json")):
        raise UserError(f"--pretrained {args.pretrained}: {problem} config.json there (expected a "
                        f"SignPoseEncoder.save_pretrained folder)")
    cfg = load_user_config(FinetuneConfig, args.config, [f"task={args.task}", *args.overrides])
    run_task(cfg, pretrained=args.pretrained, checkpoint=args.checkpoint if args.eval_only else None)


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv, prog="slp-finetune")


if __name__ == "__main__":
    main(sys.argv[1:])
