"""Streaming pre-training loader over SL-1.5M shards (webdataset), deterministic and exactly resumable.

Each rank reads its own shards — the epoch's shard order is a permutation drawn from ``(seed, epoch)``, split
round-robin by rank, then by dataloader worker — decodes and validates samples (invalid ones are logged,
counted and skipped), filters them by dataset / split and by a stable hash of the key for the data-fraction
ablation, shuffles through a buffer, groups samples of similar length into batches (less padding), crops
clips to ``max_frames`` and pads the batch. Tokenisation, normalisation and masking are then done once per
batch with tensor ops in the training process, so with one dataloader worker the two processes split the work:
the worker reads, decodes and batches, the trainer prepares (a cached tokeniser, two batched tensor passes).
Every random choice comes from generators seeded by ``(seed, epoch, rank, worker)``, ``(seed, rank, worker)``
or the batch index, so the stream is a pure function of the config: a resumed run skips the batches it had
consumed and continues exactly.

Training is counted in steps: each rank's stream runs through epoch after epoch, so ranks with a different
number of samples in an epoch never wait for one another.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from slp.data.schema import Sample
from slp.data.shards import ReadStats, iter_samples
from slp.losses.masking import hierarchical_mask
from slp.pose.normalize import normalize_pose
from slp.text.mbart import MBartTextTokenizer


@dataclass
class PretrainDataConfig:
    shards: list[str] = field(default_factory=list)  # glob patterns of shard files
    datasets: list[str] = field(default_factory=list)  # keep only these datasets (empty: all)
    splits: list[str] = field(default_factory=lambda: ["train"])
    exclude: list[str] = field(default_factory=list)  # "dataset/split" pairs never read (downstream tests)
    data_fraction: float = 1.0  # α of Table XIII: a stable subset chosen by key hash
    max_frames: int = 256
    max_text_tokens: int = 128
    batch_size: int = 32  # per rank
    shuffle_buffer: int = 1000
    bucket_batches: int = 8  # batches sorted by length together
    num_workers: int = 0
    seed: int = 0


@dataclass
class Batch:
    pose: torch.Tensor  # (B, T, 79, 3) normalised
    frame_mask: torch.Tensor  # (B, T) True = valid frame
    joint_mask: torch.Tensor  # (B, T, 79) True = masked for reconstruction
    input_ids: torch.Tensor  # (B, m) text tokens ([w.., </s>, lang]; a lone </s> + pad for unpaired samples)
    text_mask: torch.Tensor  # (B, m)
    paired: torch.Tensor  # (B,)
    keys: list[str]


def expand_shards(patterns: list[str]) -> list[str]:
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern)})
    if not paths:
        raise FileNotFoundError(f"no shard matches {patterns}")
    return paths


def _frames(sample: Sample) -> int:
    return len(sample.pose)


def key_fraction(key: str) -> float:
    """A stable number in [0, 1) per key (the same on every rank, epoch and run)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


class PretrainStream(IterableDataset):
    """Infinite stream of collated (not yet normalised) batches for one rank."""

    def __init__(self, cfg: PretrainDataConfig, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.shards = expand_shards(cfg.shards)
        readers = world_size * max(1, cfg.num_workers)
        if len(self.shards) < readers:
            raise ValueError(f"{len(self.shards)} shards for {world_size} ranks × {max(1, cfg.num_workers)} "
                             f"workers: every reader needs at least one shard (write smaller shards)")
        self.excluded = {tuple(e.split("/", 1)) for e in cfg.exclude}
        self.stats = ReadStats()

    def keep(self, sample: Sample) -> bool:
        m = self.cfg
        meta = sample.meta
        return ((not m.datasets or meta.dataset in m.datasets) and (not m.splits or meta.split in m.splits)
                and (meta.dataset, meta.split) not in self.excluded
                and (m.data_fraction >= 1.0 or key_fraction(sample.key) < m.data_fraction))

    def epoch_shards(self, epoch: int, worker: int, workers: int) -> list[str]:
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.shards))
        mine = [self.shards[i] for i in order][self.rank :: self.world_size]
        return mine[worker::workers]

    def epoch_reads(self, epoch: int, worker: int, workers: int) -> Iterator[Sample]:
        """The kept samples of this worker's shards for ``epoch``, in reading order."""
        return (s for s in iter_samples(self.epoch_shards(epoch, worker, workers), self.stats) if self.keep(s))

    def samples(self, worker: int, workers: int) -> Iterator[Sample]:
        """Every epoch's samples through a shuffle buffer, epoch after epoch, each epoch whole before the next.

        An epoch's last buffer drains one sample per sample read into the next epoch's buffer, so the reader
        never stops for a refill at an epoch boundary (with a small dataloader prefetch queue that stop would
        idle the trainer too).
        """
        leftover: list[Sample] = []  # the previous epoch's buffer, in random order
        fruitless: set[str] = set()  # shards read in a row of epochs that kept no sample
        for epoch in itertools.count():
            rng = np.random.default_rng([self.cfg.seed, epoch, self.rank, worker, 1])
            buffer: list[Sample] = []
            draws = iter(())
            reads = 0
            for sample in self.epoch_reads(epoch, worker, workers):
                reads += 1
                if leftover:
                    yield leftover.pop()
                buffer.append(sample)
                if len(buffer) >= self.cfg.shuffle_buffer:  # full: emit a random element
                    u = next(draws, None)
                    if u is None:  # uniform draws in blocks: one generator call per sample costs more than the pop
                        draws = iter(rng.random(1024).tolist())
                        u = next(draws)
                    yield buffer.pop(int(u * len(buffer)))
            # A worker may draw only shards without kept samples for an epoch; once such epochs in a row have
            # covered every shard, nothing passes the filters and the stream would spin through empty epochs.
            fruitless = fruitless | set(self.epoch_shards(epoch, worker, workers)) if reads == 0 else set()
            if len(fruitless) == len(self.shards):
                raise ValueError(f"no sample in the {len(self.shards)} shards passes the filters (datasets "
                                 f"{self.cfg.datasets}, splits {self.cfg.splits}, exclude {self.cfg.exclude}, "
                                 f"data_fraction {self.cfg.data_fraction})")
            yield from reversed(leftover)  # an epoch shorter than the buffer: the previous one ends first
            rng.shuffle(buffer)
            leftover = buffer

    def batches(self, worker: int, workers: int) -> Iterator[list[Sample]]:
        """Length-aware batching over a rolling pool of ``bucket_batches`` batches.

        Each step tops the pool up with one batch of new samples, sorts it by length and emits one of its
        ``bucket_batches`` aligned runs, chosen at random, so every sample leaves the pool with probability
        1 / bucket_batches per step. Reading one batch per step keeps the worker's output steady: sorting whole
        pools in turn made it bursty (a pool's read, then all its batches at once), which a dataloader's small
        prefetch queue turns into waiting on both sides. The pool rolls on across epochs, so no sample is dropped.
        """
        rng = np.random.default_rng([self.cfg.seed, self.rank, worker, 2])
        size = self.cfg.batch_size
        pool_size = size * self.cfg.bucket_batches
        pool: list[Sample] = []
        for sample in self.samples(worker, workers):
            pool.append(sample)
            if len(pool) == pool_size:
                pool.sort(key=_frames)
                start = size * int(rng.integers(self.cfg.bucket_batches))
                yield pool[start : start + size]
                del pool[start : start + size]

    def collate(self, samples: list[Sample], rng: np.random.Generator) -> dict:
        """Padded float16 poses and per-sample fields as numpy arrays and lists.

        Numpy, not tensors: a worker hands each tensor to the trainer through a new shared-memory segment, which
        for batches this small costs more than the whole batch's decoding; numpy arrays travel in the pickle.
        """
        lengths = np.array([min(len(s.pose), self.cfg.max_frames) for s in samples])
        pose = np.zeros((len(samples), int(lengths.max()), 79, 3), dtype=np.float16)
        for i, (s, n) in enumerate(zip(samples, lengths)):
            start = int(rng.integers(len(s.pose) - n + 1))  # random crop of long clips
            pose[i, :n] = s.pose[start : start + n]
        return {"pose": pose, "lengths": lengths,
                "texts": [s.meta.text if s.meta.paired else "" for s in samples],
                "languages": [s.meta.text_language if s.meta.paired else "en" for s in samples],
                "paired": np.array([s.meta.paired for s in samples]), "keys": [s.key for s in samples]}

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.cfg.seed, self.rank, worker, 3])
        for samples in self.batches(worker, workers):
            yield self.collate(samples, rng)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch ops on one thread, then restore the thread count.

    A batch is a few hundred thousand numbers: an OpenMP team costs more than it saves on tensors that small,
    and while dataloader workers keep the other cores busy its threads spin against them (measured on 2 cores:
    one thread is 1.8× cheaper in CPU time uncontended, and many times faster next to a busy worker).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def prepare_batch(raw: dict, tokenizer: MBartTextTokenizer, mask_ratio: float, seed: int, rank: int,
                  index: int) -> Batch:
    """Tokenisation, batched normalisation and masking; the mask depends only on (seed, rank, batch index)."""
    pose = torch.from_numpy(raw["pose"])
    frame_mask = torch.arange(pose.shape[1])[None, :] < torch.from_numpy(raw["lengths"])[:, None]
    input_ids, text_mask = tokenizer(raw["texts"], raw["languages"])
    with single_threaded():
        pose = normalize_pose(pose)
        joint_mask = hierarchical_mask(frame_mask, mask_ratio, np.random.default_rng([seed, rank, index]))
    return Batch(pose=pose, frame_mask=frame_mask, joint_mask=joint_mask, input_ids=input_ids, text_mask=text_mask,
                 paired=torch.from_numpy(raw["paired"]), keys=raw["keys"])


def _as_collated(batch: dict) -> dict:
    return batch


def pretrain_batches(cfg: PretrainDataConfig, tokenizer: MBartTextTokenizer, *, rank: int = 0, world_size: int = 1,
                     mask_ratio: float = 0.4, skip: int = 0) -> Iterator[Batch]:
    """Normalised, masked batches for one rank, starting after ``skip`` consumed batches."""
    stream = PretrainStream(cfg, rank, world_size)
    # Its own generator: a DataLoader otherwise draws its base seed from the global torch RNG, which would
    # shift dropout after a resume restored that RNG.
    # collate_fn keeps the worker's numpy arrays as they are (the default would turn them into tensors).
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.num_workers, collate_fn=_as_collated,
                        persistent_workers=cfg.num_workers > 0, generator=torch.Generator().manual_seed(cfg.seed))
    for index, raw in enumerate(loader):
        if index >= skip:
            yield prepare_batch(raw, tokenizer, mask_ratio, cfg.seed, rank, index)
