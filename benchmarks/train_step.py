"""Train-step throughput of the `tiny` and `base` pre-training models (fp32, on CPU).

    python benchmarks/train_step.py [--batch 8 --frames 128 --steps 5]

A step is forward + backward + AdamW on random poses and text features. Achieved FLOP/s counts the step's
FLOPs with torch's FlopCounterMode and divides by the measured time; it is compared with the FLOP/s of a large
fp32 matmul measured in the same process (what the cores can do at best).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from pretrain.config import PretrainRunConfig
from slp.config import load_config
from slp.losses.masking import hierarchical_mask
from slp.models.pretraining import PretrainingModel


def matmul_flops_per_s(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def step_inputs(cfg: PretrainRunConfig, batch: int, frames: int, tokens: int = 32):
    g = torch.Generator().manual_seed(0)
    pose = torch.rand(batch, frames, 79, 3, generator=g) * 2 - 1
    frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    joint_mask = hierarchical_mask(frame_mask, cfg.loss.mask_ratio, np.random.default_rng(0))
    text = torch.randn(batch, tokens, cfg.model.text_dim, generator=g)
    return pose, frame_mask, joint_mask, text, torch.ones(batch, tokens, dtype=torch.bool), torch.ones(batch).bool()


def measure(config: str, batch: int, frames: int, steps: int) -> dict:
    cfg = load_config(PretrainRunConfig, config, ["model.encoder.dropout=0.0"])
    torch.manual_seed(0)
    model = PretrainingModel(cfg.model, cfg.loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = step_inputs(cfg, batch, min(frames, cfg.model.encoder.max_frames))

    def step():
        loss = model(*inputs)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, optimiser state)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "seconds": seconds,
            "samples_per_s": batch / seconds, "flops_per_s": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    peak = matmul_flops_per_s()
    print(f"fp32 matmul 2048³: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads); "
          f"batch {args.batch} × {args.frames} frames")
    print(f"{'config':<6} {'params (M)':>10} {'s/step':>8} {'samples/s':>10} {'GFLOP/s':>9} {'of matmul':>10}")
    for name in ("tiny", "base"):
        r = measure(f"configs/pretrain/{name}.yaml", args.batch, args.frames, args.steps)
        print(f"{name:<6} {r['params_m']:>10.1f} {r['seconds']:>8.3f} {r['samples_per_s']:>10.1f} "
              f"{r['flops_per_s'] / 1e9:>9.1f} {100 * r['flops_per_s'] / peak:>9.1f}%")


if __name__ == "__main__":
    main()
