"""``slp-finetune``: fine-tune a pre-trained SignPoseEncoder on a downstream task and report its metrics.

    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only \
        --checkpoint runs/finetune/islr_wlasl/best.safetensors
    slp-finetune --task cslr --config configs/finetune/cslr/phoenix14.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task slt --config configs/finetune/slt/phoenix14t.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task retrieval --config configs/finetune/retrieval/csl_daily.yaml --pretrained ...
    accelerate launch --num_processes 8 -m finetune.cli --task islr --config ...      # distributed

Without --pretrained the encoder is built from the config's `encoder` section and trained from scratch.
"""

from __future__ import annotations

import argparse
import sys

from finetune.config import FinetuneConfig
from finetune.trainer import TASK_MODULES, run_task
from slp.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slp-finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASK_MODULES))
    parser.add_argument("--config", required=True, help="configs/finetune/<task>/<dataset>.yaml")
    parser.add_argument("--pretrained", help="directory of a SignPoseEncoder.save_pretrained export")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint on dev and test")
    parser.add_argument("--checkpoint", help="fine-tuned checkpoint (best.safetensors) to evaluate")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")
    try:
        cfg = load_config(FinetuneConfig, args.config, [f"task={args.task}", *args.overrides])
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    run_task(cfg, pretrained=args.pretrained, checkpoint=args.checkpoint if args.eval_only else None)


if __name__ == "__main__":
    main(sys.argv[1:])
