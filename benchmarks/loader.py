"""Pre-training loader throughput on the same synthetic clips, next to the usual alternatives.

    python benchmarks/loader.py [--clips 5000 --batch 32]

(a) plain webdataset iteration over the shards (raw bytes, nothing decoded): the issue's reference;
(a') the same raw samples from slp's shard reader (slp.data.shards.tar_samples), which walks tar headers
     itself instead of through Python's tarfile;
(b) the slp loader (slp.data.loader.pretrain_batches): read + decode + validate + shuffle + length-aware
    batching + collate in the dataloader worker(s), then tokenisation, batched normalisation and masking in the
    training process; with 1 worker (the goal's setting) and with 2. Timed from the call, so the worker's start
    and the first fill of the shuffle buffer are included;
(c) webdataset .decode() + per-sample normalisation in Python (the common way);
(d) one pickle per clip (how several peers store poses), loaded and normalised per sample.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from slp.data.loader import PretrainDataConfig, pretrain_batches
from slp.data.shards import iter_samples, tar_members, tar_samples
from slp.pose.normalize import normalize_pose
from slp.synthetic import SyntheticConfig, corpus_texts, write_synthetic_corpus
from slp.text.mbart import MBartTextTokenizer
from slp.text.tiny import build_tiny_mbart


def rate(count: int, start: float) -> float:
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the clips for (a), (a') and (b)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slp-loader-bench-"))
    signers = max(3, args.clips // 100)
    cfg = SyntheticConfig(num_glosses=50, num_signers=signers, dev_signers=0, test_signers=1, repetitions=2,
                          sentences_per_signer=0, shard_samples=500)
    write_synthetic_corpus(work / "corpus", cfg)
    shards = sorted(str(p) for p in (work / "corpus" / "shards").glob("*.tar"))
    tokenizer = MBartTextTokenizer.from_pretrained(build_tiny_mbart(work / "mbart", corpus_texts(cfg)))
    total = sum(1 for _ in iter_samples(shards))
    results = {}

    start = time.perf_counter()
    n = sum(1 for _ in range(args.epochs) for _ in wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    results["(a) webdataset, raw bytes"] = rate(n, start)

    start = time.perf_counter()
    n = 0
    for url in shards * args.epochs:
        with open(url, "rb") as stream:
            n += sum(1 for _ in tar_samples(tar_members(stream), url))
    results["(a') slp shard reader, raw bytes"] = rate(n, start)

    first_batch = {}
    for workers in (1, 2):
        data = PretrainDataConfig(shards=[str(work / "corpus" / "shards" / "*.tar")], splits=[],
                                  batch_size=args.batch, num_workers=workers, shuffle_buffer=1000, max_frames=256)
        start = time.perf_counter()
        batches = pretrain_batches(data, tokenizer)
        n = len(next(batches).keys)
        first_batch[workers] = time.perf_counter() - start
        n += sum(len(b.keys) for b in itertools.islice(batches, args.epochs * total // args.batch - 1))
        results[f"(b) slp loader, {workers} worker{'s' if workers > 1 else ''}"] = rate(n, start)

    start = time.perf_counter()
    n = 0
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode():
        normalize_pose(torch.from_numpy(sample["pose.npy"].astype(np.float32)))
        n += 1
    results["(c) webdataset .decode() + per-sample norm"] = rate(n, start)

    pickles = work / "pickles"
    pickles.mkdir()
    for i, sample in enumerate(iter_samples(shards)):
        with open(pickles / f"{i:07d}.pkl", "wb") as f:
            pickle.dump({"pose": sample.pose, "meta": sample.meta.to_json()}, f)
    start = time.perf_counter()
    n = 0
    for path in sorted(pickles.iterdir()):
        with open(path, "rb") as f:
            clip = pickle.load(f)
        normalize_pose(torch.from_numpy(clip["pose"].astype(np.float32)))
        n += 1
    results["(d) one pickle per clip + per-sample norm"] = rate(n, start)

    print(f"{total} synthetic clips in {len(shards)} shards, batch {args.batch}, {args.epochs} epochs")
    print(f"{'pipeline':<44} {'samples/s':>10} {'vs (a)':>7}")
    for name, value in results.items():
        print(f"{name:<44} {value:>10.0f} {value / results['(a) webdataset, raw bytes']:>6.2f}×")
    for workers, seconds in first_batch.items():
        print(f"(b) {workers} worker(s): first batch after {1e3 * seconds:.0f} ms (worker start and shuffle-buffer "
              f"fill, included above)")


if __name__ == "__main__":
    main()
