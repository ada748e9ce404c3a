r"""slp-finetune: fine-tune a pre-trained SignPoseEncoder on a downstream task and report its metrics.

examples:
  slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --pretrained runs/pretrain/encoder \
      data.shards=[runs/sl15m/shards/*.tar]
  slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only \
      --checkpoint runs/finetune/islr_wlasl/best.safetensors
  slp-finetune --task islr --config configs/finetune/islr/wlasl.yaml --eval-only \
      --checkpoint runs/finetune/islr_wlasl/model  # a head folder (a run's <output>/model)
  slp-finetune --task cslr --config configs/finetune/cslr/phoenix14.yaml --pretrained runs/pretrain/encoder
  slp-finetune --task slt --config configs/finetune/slt/phoenix14t.yaml --pretrained runs/pretrain/encoder
  slp-finetune --task retrieval --config configs/finetune/retrieval/csl_daily.yaml --pretrained ...
  accelerate launch --num_processes 8 -m finetune.cli --task islr --config ...  # distributed
  ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_machines 1 --num_processes 2 -m finetune.cli ...  # CPU

The config (YAML) is changed from the command line with key=value overrides, dotted for nesting: data.shards=[...]
says where the curated shards are (the configs name /data/sl15m/shards/*.tar), optim.lr=3e-4, mixed_precision=no.

Training and --eval-only alike run on any number of processes; the evaluation metrics do not depend on it.
Without --pretrained the encoder is built from the config's encoder section and trained from scratch.

A training run ends with <output>/model, a self-contained head folder (weights, config, head.json, the text model a
head reads, a model card) that slp-predict and finetune.export.load_finetuned load, also from the Hub. With a head
folder as --checkpoint, the head is the folder's; --config gives the data, batch size and output. An ISLR head is
evaluated only on labels it has, and a head folder only on data whose glosses are its class names: a head of another
vocabulary is refused unless --allow-vocabulary-mismatch is given.

A mistake in what you give (an option, the config, a file or folder named) is one line naming it, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune.config import FinetuneConfig  # torch-free (slp.models.configuration): a config mistake shows at once
from finetune.tasks import task_names
from slp.cli_errors import (
    ArgumentParser,
    UserError,
    file_problem,
    folder_problem,
    load_user_config,
    read_user_json,
    read_user_text,
    run_cli,
)

PROG = "slp-finetune"
#: The files of a pre-trained encoder export (SignPoseEncoder.save_pretrained) and of a head folder's record, named
#: here so that checking them imports no torch (tests/test_cli_first_hour.py keeps them the library's names).
ENCODER_FILES = ("config.json", "model.safetensors")
HEAD_RECORD = "head.json"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=task_names(), help="the downstream task: its head")
    parser.add_argument("--config", required=True, help="configs/finetune/<task>/<dataset>.yaml")
    parser.add_argument("--pretrained", help="folder of a SignPoseEncoder.save_pretrained export (config.json, "
                                             "model.safetensors), e.g. runs/pretrain/encoder")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint on dev and test")
    parser.add_argument("--checkpoint",
                        help="with --eval-only: a fine-tuned checkpoint (best.safetensors, with its head.json) or a "
                             "head folder (<output>/model) to evaluate")
    parser.add_argument("--allow-vocabulary-mismatch", action="store_true",
                        help="with --eval-only of an ISLR head: evaluate even when the data's labels are not the "
                             "head's classes (glosses other than its class names, labels beyond its classes: a head "
                             "of another vocabulary); refused otherwise")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.shards=[DIR/*.tar] optim.epochs=10 mixed_precision=no")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The mistakes that need no model code: options that do not go together, and the files and folders named
    (the config, the --pretrained export, the --checkpoint) that are not there or not of their kind."""
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")
    if args.checkpoint and not args.eval_only:
        parser.error("--checkpoint is evaluated with --eval-only (training starts from --pretrained or from scratch)")
    if args.allow_vocabulary_mismatch and not args.eval_only:
        parser.error("--allow-vocabulary-mismatch applies to --eval-only")
    if task := next((o for o in args.overrides if o.split("=", 1)[0].strip() == "task"), None):
        parser.error(f"override {task!r}: the task is --task")
    if problem := file_problem(args.config):
        raise UserError(f"--config {args.config}: {problem}")
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file or folder")
    if args.pretrained:
        check_pretrained(args.pretrained)


def check_pretrained(path: str) -> None:
    """A --pretrained folder holds an encoder export: ``config.json`` and ``model.safetensors``."""
    what = "a SignPoseEncoder.save_pretrained folder: config.json, model.safetensors"
    if problem := folder_problem(path):
        raise UserError(f"--pretrained {path}: {problem} (expected {what})")
    if (Path(path) / HEAD_RECORD).is_file():
        raise UserError(f"--pretrained {path}: a fine-tuned head folder, not a pre-trained encoder export (evaluate "
                        f"it with --eval-only --checkpoint {path})")
    for name in ENCODER_FILES:
        if problem := file_problem(Path(path) / name):
            raise UserError(f"--pretrained {path}: {name}: {problem} (expected {what})")


def check_config(args: argparse.Namespace, cfg) -> None:
    """What the typed config says that cannot work: a config file of another task (it has that head's section), an
    output that is a file, shards that are not there."""
    import yaml

    from slp.data.shards import expand_shards

    sections = yaml.safe_load(read_user_text(args.config)) or {}  # read and checked by load_user_config already
    for other in task_names():
        if other != cfg.task and other in sections:
            raise UserError(f"--config {args.config}: has a {other} section, options of the {other} head, which "
                            f"--task {cfg.task} does not read: a config of task {other}? (run --task {other}, or take "
                            f"a configs/finetune/{cfg.task}/ config)")
    if Path(cfg.output).exists() and (problem := folder_problem(cfg.output)):
        raise UserError(f"output={cfg.output}: {problem}")
    patterns = cfg.data.shards
    where = "give the curated shards with the override data.shards=[DIR/*.tar]"
    if not patterns:
        raise UserError(f"--config {args.config}: data.shards is empty ({where})")
    try:
        paths = expand_shards(patterns)
    except FileNotFoundError:
        raise UserError(f"data.shards: no file matches {', '.join(patterns)} (from {args.config} or an override; "
                        f"{where})") from None
    if folder := next((p for p in paths if Path(p).is_dir()), None):
        raise UserError(f"data.shards: {folder} is a folder, not a shard ({where}, e.g. "
                        f"data.shards=[{Path(folder) / '*.tar'}])")


def check_encoder_files(path: str) -> None:
    """The --pretrained files read: ``config.json`` a SignPoseEncoder's config (not a head folder's, nor another
    model's), ``model.safetensors`` whole (not truncated)."""
    from safetensors import SafetensorError, safe_open

    from slp.config import ConfigError, from_dict
    from slp.models.configuration import SignEncoderConfig

    config, weights = (Path(path) / name for name in ENCODER_FILES)
    data = read_user_json(config, f"--pretrained {path}")
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: holds no mapping")
        from_dict(SignEncoderConfig, data, str(config))
    except ConfigError as exc:
        raise UserError(f"--pretrained {path}: not a SignPoseEncoder export ({exc})") from None
    try:
        with safe_open(weights, "np"):
            pass
    except SafetensorError as exc:
        raise UserError(f"--pretrained {path}: {weights}: unreadable safetensors ({exc}; truncated?)") from None


def _main(argv: list[str] | None) -> None:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    check_arguments(parser, args)
    cfg = load_user_config(FinetuneConfig, args.config, [*args.overrides, f"task={args.task}"])
    check_config(args, cfg)
    if args.pretrained:
        check_encoder_files(args.pretrained)
    # The trainer (transformers, accelerate) only now: every mistake above is reported before it loads.
    from finetune.trainer import run_task

    run_task(cfg, pretrained=args.pretrained, checkpoint=args.checkpoint if args.eval_only else None,
             allow_vocabulary_mismatch=args.allow_vocabulary_mismatch)


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main(sys.argv[1:])
