"""``slp-finetune``: fine-tune a pre-trained SignPoseEncoder on a downstream task.

    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --pretrained runs/pretrain/encoder
    slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only --checkpoint runs/islr/best

The task heads are being built (issue "Fine-tuning and evaluation"); until they land this command checks its
arguments and says so.
"""

from __future__ import annotations

import argparse
import sys

TASKS = ("islr", "cslr", "slt", "retrieval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slp-finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--config", required=True, help="configs/finetune/<task>/<dataset>.yaml")
    parser.add_argument("--pretrained", help="directory of a SignPoseEncoder.save_pretrained export")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint on dev and test")
    parser.add_argument("--checkpoint", help="fine-tuned checkpoint to evaluate")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")
    parser.exit(2, f"slp-finetune: the {args.task} head is not available in this version yet\n")


if __name__ == "__main__":
    main(sys.argv[1:])
