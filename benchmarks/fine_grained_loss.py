"""Fine-grained similarity at B = 256, n = 64, m = 64, d_e = 512: chunked vs naive, peak memory and time.

    python benchmarks/fine_grained_loss.py [--batch 256 --clips 64 --tokens 64 --dim 512 --chunk 16]

Each variant runs in a fresh subprocess; its peak memory is the process's peak RSS minus the RSS measured
after the inputs were made, so the allocator's high-water mark of that variant alone is compared.
Forward + backward of the similarity (what training does).

It also prints the similarity FLOPs each rank spends at a simulated world size W (``--world``, default 8),
counted by torch's FlopCounterMode on the meta device (shapes only, nothing computed): before, every rank scored
the whole global B × B matrix; now each rank scores its B / W clips against the B texts of the global batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run_variant(args) -> None:
    import torch

    from slp.losses.contrastive import fine_grained_similarity

    torch.manual_seed(0)
    sign = torch.randn(args.batch, args.clips, args.dim, requires_grad=True)
    text = torch.randn(args.batch, args.tokens, args.dim, requires_grad=True)
    sign_mask = torch.ones(args.batch, args.clips, dtype=torch.bool)
    text_mask = torch.ones(args.batch, args.tokens, dtype=torch.bool)
    sign_mask[::3, args.clips // 2 :] = False
    text_mask[::5, args.tokens // 3 :] = False
    base = _rss_mib()
    start = time.perf_counter()
    sim = fine_grained_similarity(sign, sign_mask, text, text_mask, chunk_size=args.chunk or None)
    sim.sum().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak - base, "checksum": sim.double().sum().item(),
                      "sim": sim.detach()[:8, :8].tolist()}))


def similarity_flops(clips: int, texts: int, args) -> int:
    """FLOPs of the forward + backward fine-grained similarity of ``clips`` sign samples against ``texts`` texts."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from slp.losses.contrastive import fine_grained_similarity

    sign = torch.randn(clips, args.clips, args.dim, device="meta", requires_grad=True)
    text = torch.randn(texts, args.tokens, args.dim, device="meta", requires_grad=True)
    sign_mask = torch.ones(clips, args.clips, dtype=torch.bool, device="meta")
    text_mask = torch.ones(texts, args.tokens, dtype=torch.bool, device="meta")
    with FlopCounterMode(display=False) as counter:
        fine_grained_similarity(sign, sign_mask, text, text_mask, chunk_size=args.chunk or None).sum().backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--world", type=int, default=8, help="simulated number of ranks for the FLOP count")
    parser.add_argument("--variant", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    results = {}
    for name, chunk in (("naive", 0), (f"chunked ({args.chunk})", args.chunk)):
        cmd = [sys.executable, __file__, "--variant", "--batch", str(args.batch), "--clips", str(args.clips),
               "--tokens", str(args.tokens), "--dim", str(args.dim), "--chunk", str(chunk)]
        results[name] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    naive, chunked = results["naive"], results[f"chunked ({args.chunk})"]
    diff = max(abs(a - b) for ra, rb in zip(naive["sim"], chunked["sim"]) for a, b in zip(ra, rb))
    print(f"fine-grained similarity, B={args.batch} n={args.clips} m={args.tokens} d_e={args.dim}, forward+backward")
    print(f"{'variant':<14} {'peak MiB':>10} {'seconds':>9}")
    for name, r in results.items():
        print(f"{name:<14} {r['peak_mib']:>10.0f} {r['seconds']:>9.2f}")
    print(f"memory ratio chunked/naive: {chunked['peak_mib'] / naive['peak_mib']:.3f} (goal ≤ 0.125)")
    print(f"time ratio chunked/naive:   {chunked['seconds'] / naive['seconds']:.2f} (goal ≤ 1.3)")
    print(f"max |difference| (8×8 block): {diff:.2e}; checksum difference "
          f"{abs(naive['checksum'] - chunked['checksum']):.2e} (goal ≤ 1e-5 per value)")
    before = similarity_flops(args.batch, args.batch, args)
    after = similarity_flops(args.batch // args.world, args.batch, args)
    print(f"similarity FLOPs per rank, global batch {args.batch} over W={args.world} ranks (forward+backward):")
    print(f"  before (every rank scores the whole {args.batch}×{args.batch} matrix): {before / 1e9:10.1f} GFLOP")
    print(f"  after  (each rank scores its {args.batch // args.world} clips × {args.batch} texts): "
          f"{after / 1e9:10.1f} GFLOP")
    print(f"  ratio after/before: {after / before:.4f} (goal 1/{args.world} = {1 / args.world:.4f})")


if __name__ == "__main__":
    main()
