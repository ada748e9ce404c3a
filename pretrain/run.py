"""Pre-train the SignPoseEncoder on SL-1.5M shards with DeepSpeed.

    deepspeed pretrain/run.py --config configs/pretrain/base.yaml [key=value ...]
    deepspeed --num_gpus 2 pretrain/run.py --config configs/pretrain/tiny.yaml data.shards=[runs/syn/shards/*.tar]
    deepspeed --hostfile hosts pretrain/run.py --config configs/pretrain/paper.yaml     # multi-node
    deepspeed pretrain/run.py --config ... --resume     # continue exactly from the latest checkpoint

On a CPU machine, `deepspeed --num_gpus 2` starts two local ranks over gloo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `deepspeed pretrain/run.py` from a checkout

from pretrain.config import PretrainRunConfig  # noqa: E402
from pretrain.trainer import train  # noqa: E402
from slp.cli_errors import ArgumentParser, load_user_config, run_cli  # noqa: E402


def _main(argv: list[str] | None) -> None:
    parser = ArgumentParser(prog="pretrain/run.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/pretrain/{tiny,base,paper}.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <output>/checkpoints/latest")
    parser.add_argument("--local_rank", type=int, default=0, help="set by the deepspeed launcher")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.max_steps=100")
    args = parser.parse_args(argv)
    cfg = load_user_config(PretrainRunConfig, args.config, args.overrides)
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    train(cfg, resume=args.resume)


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv, prog="pretrain/run.py")


if __name__ == "__main__":
    main()
