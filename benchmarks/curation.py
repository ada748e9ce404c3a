"""Curation throughput and memory: samples/s with 1 and 2 workers, peak RSS at growing sample counts.

    python benchmarks/curation.py                          # 10k and 100k records, 1 and 2 workers
    python benchmarks/curation.py --samples 2000 20000 --workers 1 2 4

Each configuration runs in a fresh process (so peak RSS is its own): N records of one synthetic dataset, each
a clip of a few small ``.npy`` pose files, curated by :func:`data_curation.pipeline.build` into a temporary
folder. Peak RSS is the process's own maximum plus the largest worker's (``getrusage`` maxrss), which bounds
what the build held at once. Goals (the curation issue): RSS at 100k ≤ 1.2 × RSS at 10k (streaming), and
2 workers ≥ 1.7 × the samples/s of 1 worker on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POSE_FILES = 8
FRAMES = 64
WIDTH, HEIGHT = 1280, 720


def _records(num: int):
    from data_curation.records import CurationRecord

    for i in range(num):
        start = i % 16
        yield "bench", CurationRecord(
            dataset="bench", split="train", source_id=str(i), sign_language="ASL", text_language="en",
            pose_path=f"pose{i % POSE_FILES}.npy", frame_start=start, frame_end=start + 40,
            text=f"This word is sign{i % 1000}.", gloss=f"sign{i % 1000}", label=i % 1000, paired=True,
            key=f"bench_{i:08d}",
        )


def run_one(num: int, workers: int, records_per_shard: int) -> dict:
    """Curate ``num`` records with ``workers`` workers in a temporary folder; timing and peak RSS."""
    from data_curation.config import CurateConfig, DatasetConfig, PoseSourceConfig
    from data_curation.pipeline import build

    with tempfile.TemporaryDirectory(prefix="slp-curation-bench-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        (root / "poses").mkdir()
        for i in range(POSE_FILES):
            kp = np.stack([rng.uniform(0, WIDTH, (FRAMES, 133)), rng.uniform(0, HEIGHT, (FRAMES, 133)),
                           rng.uniform(0, 1, (FRAMES, 133))], axis=-1).astype(np.float32)
            np.save(root / "poses" / f"pose{i}.npy", kp)
        poses = PoseSourceConfig(root=str(root / "poses"), fps=25.0, width=WIDTH, height=HEIGHT)
        cfg = CurateConfig(output=str(root / "out"), records_per_shard=records_per_shard, workers=workers,
                           datasets={"bench": DatasetConfig(adapter="bench", annotation_root=tmp, poses=poses)})
        started = time.perf_counter()
        summary = build(cfg, _records(num))
        elapsed = time.perf_counter() - started
        shard_bytes = sum(p.stat().st_size for p in (root / "out" / "shards").glob("*.tar"))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"samples": summary["totals"]["written"], "workers": workers, "seconds": elapsed,
            "samples_per_s": summary["totals"]["written"] / elapsed, "main_rss_mib": own,
            "worker_rss_mib": worker if workers > 1 else 0.0,
            "peak_rss_mib": own + (worker if workers > 1 else 0.0), "shard_mib": shard_bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--records-per-shard", type=int, default=1000)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single run, in its own process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.samples[0], args.workers[0], args.records_per_shard)))
        return

    results = []
    for num in args.samples:
        for workers in args.workers:
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--samples", str(num), "--workers", str(workers),
                 "--records-per-shard", str(args.records_per_shard)],
                check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  done: {num} records, {workers} worker(s): {r['seconds']:.1f} s", file=sys.stderr)

    print(f"{'samples':>8} {'workers':>7} {'seconds':>8} {'samples/s':>10} {'speed-up':>8} "
          f"{'main RSS MiB':>12} {'worker RSS MiB':>14} {'peak RSS MiB':>12} {'shards MiB':>10}")
    for r in results:
        base = next(b for b in results if b["samples"] == r["samples"] and b["workers"] == min(args.workers))
        print(f"{r['samples']:>8} {r['workers']:>7} {r['seconds']:>8.1f} {r['samples_per_s']:>10.0f} "
              f"{r['samples_per_s'] / base['samples_per_s']:>8.2f} {r['main_rss_mib']:>12.0f} "
              f"{r['worker_rss_mib']:>14.0f} {r['peak_rss_mib']:>12.0f} {r['shard_mib']:>10.1f}")
    if len(args.samples) > 1:
        small, large = min(args.samples), max(args.samples)
        for workers in args.workers:
            rss = {r["samples"]: r["peak_rss_mib"] for r in results if r["workers"] == workers}
            print(f"RSS ratio {large}/{small} samples, {workers} worker(s): {rss[large] / rss[small]:.2f} "
                  f"(goal ≤ 1.2)")


if __name__ == "__main__":
    main()
