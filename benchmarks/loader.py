"""Pre-training loader throughput on the same synthetic clips, next to the usual alternatives.

    python benchmarks/loader.py [--clips 5000 --batch 32 --epochs 3 --rounds 5]

(a) plain webdataset iteration over the shards (raw bytes, nothing decoded): the issue's reference;
(a') the same raw samples from slp's shard reader (slp.data.shards.tar_samples), which walks tar headers
     itself instead of through Python's tarfile;
(b) the slp loader (slp.data.loader.pretrain_batches): read + decode + validate + shuffle + length-aware
    batching + collate in the dataloader worker(s), then tokenisation, batched normalisation and masking in the
    training process; with 1 worker (the goal's setting) and with 2. Timed from the call, so the worker's start
    and the first fill of the shuffle buffer are included (and printed apart);
(c) webdataset .decode() + per-sample normalisation in Python (the common way);
(d) one pickle per clip (how several peers store poses), loaded and normalised per sample.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import tempfile
import time
from collections.abc import Callable
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


def timed(pipeline: Callable[[], int]) -> tuple[float, float]:
    """(samples/s, seconds) of one run of ``pipeline``, which returns how many samples it produced."""
    start = time.perf_counter()
    count = pipeline()
    seconds = time.perf_counter() - start
    return count / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the clips per run of (a), (a'), (b)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs of (a), (a'), (b); medians shown")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slp-loader-bench-"))
    signers = max(3, args.clips // 100)
    cfg = SyntheticConfig(num_glosses=50, num_signers=signers, dev_signers=0, test_signers=1, repetitions=2,
                          sentences_per_signer=0, shard_samples=500)
    write_synthetic_corpus(work / "corpus", cfg)
    shards = sorted(str(p) for p in (work / "corpus" / "shards").glob("*.tar"))
    tokenizer = MBartTextTokenizer.from_pretrained(build_tiny_mbart(work / "mbart", corpus_texts(cfg)))
    total = sum(1 for _ in iter_samples(shards))

    def webdataset_raw() -> int:
        return sum(1 for _ in range(args.epochs) for _ in wds.WebDataset(shards, shardshuffle=False, empty_check=False))

    def slp_reader_raw() -> int:
        count = 0
        for url in shards * args.epochs:
            with open(url, "rb") as stream:
                count += sum(1 for _ in tar_samples(tar_members(stream), url))
        return count

    first_batch: dict[int, list[float]] = {1: [], 2: []}

    def slp_loader(workers: int) -> Callable[[], int]:
        def run() -> int:
            data = PretrainDataConfig(shards=[str(work / "corpus" / "shards" / "*.tar")], splits=[],
                                      batch_size=args.batch, num_workers=workers, shuffle_buffer=1000, max_frames=256)
            start = time.perf_counter()
            batches = pretrain_batches(data, tokenizer)
            count = len(next(batches).keys)
            first_batch[workers].append(time.perf_counter() - start)
            return count + sum(len(b.keys) for b in itertools.islice(batches, args.epochs * total // args.batch - 1))
        return run

    def decode_per_sample() -> int:
        count = 0
        for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode():
            meta = sample["json"]
            normalize_pose(torch.from_numpy(sample["pose.npy"].astype(np.float32)),
                           torch.tensor([meta["width"], meta["height"]]))
            count += 1
        return count

    pickles = work / "pickles"
    pickles.mkdir()
    for i, sample in enumerate(iter_samples(shards)):
        with open(pickles / f"{i:07d}.pkl", "wb") as f:
            pickle.dump({"pose": sample.pose, "meta": sample.meta.to_json()}, f)

    def pickle_per_clip() -> int:
        count = 0
        for path in sorted(pickles.iterdir()):
            with open(path, "rb") as f:
                clip = pickle.load(f)
            normalize_pose(torch.from_numpy(clip["pose"].astype(np.float32)),
                           torch.tensor([clip["meta"]["width"], clip["meta"]["height"]]))
            count += 1
        return count

    # The machine's speed drifts during a run (shared cores): the pipelines take turns, round after round, and
    # each is summarised by its median, so a slow spell does not land on one of them only.
    pipelines = {
        "(a) webdataset, raw bytes": webdataset_raw,
        "(a') slp shard reader, raw bytes": slp_reader_raw,
        "(b) slp loader, 1 worker": slp_loader(1),
        "(b) slp loader, 2 workers": slp_loader(2),
    }
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, pipeline in pipelines.items():
            rates[name].append(timed(pipeline)[0])
    rates["(c) webdataset .decode() + per-sample norm"] = [timed(decode_per_sample)[0]]
    rates["(d) one pickle per clip + per-sample norm"] = [timed(pickle_per_clip)[0]]

    reference = rates["(a) webdataset, raw bytes"]
    print(f"{total} synthetic clips in {len(shards)} shards, batch {args.batch}; (a), (a'), (b): {args.rounds} "
          f"interleaved rounds of {args.epochs} epochs, medians; (c), (d): one epoch")
    print(f"{'pipeline':<44} {'samples/s':>10} {'vs (a)':>7}   {'min–max vs (a) in the same round':<}")
    for name, values in rates.items():
        ratio = float(np.median(values)) / float(np.median(reference))
        spread = ""
        if len(values) == len(reference) and len(values) > 1:
            per_round = [v / r for v, r in zip(values, reference)]
            spread = f"{min(per_round):.2f}–{max(per_round):.2f}×"
        print(f"{name:<44} {np.median(values):>10.0f} {ratio:>6.2f}×   {spread}")
    for workers, seconds in first_batch.items():
        print(f"(b) {workers} worker(s): first batch after {1e3 * float(np.median(seconds)):.0f} ms (worker start "
              f"and shuffle-buffer fill, included above)")


if __name__ == "__main__":
    main()
