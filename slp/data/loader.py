"""Streaming pre-training loader over SL-1.5M shards (webdataset), deterministic and exactly resumable.

Each rank reads its own shards — the epoch's shard order is a permutation drawn from ``(seed, epoch)``, split
round-robin by rank, then by dataloader worker — decodes and validates samples (invalid ones are logged,
counted and skipped), filters them by dataset / split and by a stable hash of the key for the data-fraction
ablation, shuffles through a buffer, groups samples of similar length into batches (less padding), crops
clips to ``max_frames`` and pads the batch, passing each clip's frame size on. Tokenisation, normalisation and
masking are then done once per batch with tensor ops in the training process, so with one dataloader worker the
two processes split the work: the worker reads, decodes and batches, the trainer prepares (a cached tokeniser,
two batched tensor passes).

Every random choice comes from generators seeded by the epoch (shard order, shuffle buffer, length pool), by
the epoch and the batch's index in it (crops), or by the global batch index (masks), and each epoch's batches
are emitted before the next epoch's: a worker's stream is a concatenation of per-epoch streams, each a function
of the config and its epoch alone. A worker's position is then ``(epoch, batches of that epoch consumed)``, and
:class:`PretrainLoader` resumes from it by reading that one epoch again, whatever the number of epochs done.

Training is counted in steps: each rank's stream runs through epoch after epoch, so ranks with a different
number of samples in an epoch never wait for one another.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from slp.data.schema import Sample
from slp.data.shards import ReadStats, expand_shards, iter_samples
from slp.losses.masking import hierarchical_mask
from slp.pose.normalize import normalize_pose
from slp.text.mbart import MBartTextTokenizer
from slp.threads import torch_threads


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
    input_ids: torch.Tensor  # (B, m) text tokens [w.., </s>, lang], padded; unpaired samples: [</s>, en_XX]
    text_mask: torch.Tensor  # (B, m)
    paired: torch.Tensor  # (B,)
    keys: list[str]


def _frames(sample: Sample) -> int:
    return len(sample.pose)


def key_fraction(key: str) -> float:
    """A stable number in [0, 1) per key (the same on every rank, epoch and run)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def selected(cfg: PretrainDataConfig, dataset: str, split: str, key: str) -> bool:
    """Whether pre-training reads a sample: its dataset and split are asked for and not excluded, and its key falls
    in the data fraction."""
    return ((not cfg.datasets or dataset in cfg.datasets) and (not cfg.splits or split in cfg.splits)
            and f"{dataset}/{split}" not in cfg.exclude
            and (cfg.data_fraction >= 1.0 or key_fraction(key) < cfg.data_fraction))


class PretrainStream(IterableDataset):
    """Infinite stream of collated (not yet normalised) batches for one rank.

    The rank's shards are read by ``max(1, num_workers)`` logical workers. Each starts at its entry of ``start``,
    ``(epoch, batches of that epoch already consumed)``, and dataloader worker ``w`` runs logical worker
    ``(w + offset) % workers`` (:class:`PretrainLoader` sets both to resume).
    """

    def __init__(self, cfg: PretrainDataConfig, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.shards = expand_shards(cfg.shards)
        self.workers = max(1, cfg.num_workers)
        readers = world_size * self.workers
        if len(self.shards) < readers:
            raise ValueError(f"{len(self.shards)} shards for {world_size} ranks × {self.workers} "
                             f"workers: every reader needs at least one shard (write smaller shards)")
        self.stats = ReadStats()
        self.start: list[tuple[int, int]] = [(0, 0)] * self.workers
        self.offset = 0

    def keep(self, sample: Sample) -> bool:
        return selected(self.cfg, sample.meta.dataset, sample.meta.split, sample.key)

    def epoch_shards(self, epoch: int, worker: int, workers: int) -> list[str]:
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.shards))
        mine = [self.shards[i] for i in order][self.rank :: self.world_size]
        return mine[worker::workers]

    def epoch_reads(self, epoch: int, worker: int, workers: int) -> Iterator[Sample]:
        """The kept samples of this worker's shards for ``epoch``, in reading order."""
        return (s for s in iter_samples(self.epoch_shards(epoch, worker, workers), self.stats) if self.keep(s))

    def samples(self, worker: int, workers: int, first_epoch: int = 0) -> Iterator[Sample | None]:
        """Every epoch's samples through a shuffle buffer from ``first_epoch`` on, each epoch followed by ``None``.

        An epoch's samples are a function of its reads and its generator only, so a stream can start at any
        epoch. Its last buffer drains one sample per sample read into the next epoch's buffer, so the reader
        never stops for a refill at an epoch boundary (with a small dataloader prefetch queue that stop would
        idle the trainer too); the buffer holds fewer samples than it takes to fill, so the epoch's last sample
        and its ``None`` still come before any sample of the next epoch.
        """
        leftover: list[Sample] = []  # the previous epoch's buffer, in random order; its None follows its last pop
        fruitless: set[str] = set()  # shards read in a row of epochs that kept no sample
        for epoch in itertools.count(first_epoch):
            rng = np.random.default_rng([self.cfg.seed, epoch, self.rank, worker, 1])
            buffer: list[Sample] = []
            draws = iter(())
            reads = 0
            for sample in self.epoch_reads(epoch, worker, workers):
                reads += 1
                if leftover:
                    yield leftover.pop()
                    if not leftover:
                        yield None
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
                stats = self.stats
                if stats.samples == 0:  # nothing valid was read: the shards are the problem, not the filters
                    raise ValueError(f"no readable sample in the {len(self.shards)} shards: {stats.truncated_shards} "
                                     f"unreadable or truncated shard(s), {stats.rejected} invalid sample(s) "
                                     f"(each logged with its shard, key and reason)")
                raise ValueError(f"no sample in the {len(self.shards)} shards passes the filters (datasets "
                                 f"{self.cfg.datasets}, splits {self.cfg.splits}, exclude {self.cfg.exclude}, "
                                 f"data_fraction {self.cfg.data_fraction})")
            if leftover:  # an epoch shorter than the buffer: the previous one ends first
                yield from reversed(leftover)
                yield None
            rng.shuffle(buffer)
            leftover = buffer
            if not leftover:
                yield None

    def batches(self, worker: int, workers: int, first_epoch: int = 0) -> Iterator[tuple[int, int, list[Sample]]]:
        """``(epoch, index in the epoch, samples)``: length-aware batches of each epoch's samples.

        An epoch's samples go through a pool of ``bucket_batches`` batches: each step tops the pool up with one
        batch of new samples, sorts it by length and emits one of its ``bucket_batches`` aligned runs, chosen at
        random, so every sample leaves the pool with probability 1 / bucket_batches per step. Reading one batch
        per step keeps the worker's output steady: sorting whole pools in turn made it bursty (a pool's read,
        then all its batches at once), which a dataloader's small prefetch queue turns into waiting on both sides.

        When the epoch's samples end, the rest of its pool is sorted and cut into runs (the last one may be
        short: nothing is dropped), emitted in random order one per batch of the next epoch's samples while the
        next pool fills, so the worker does not stall at the boundary either. That tail has fewer batches than the
        pool holds, so it is out before the next epoch's first batch. Every epoch's batches are then a function
        of that epoch's samples and its generator ``(seed, rank, worker, 2, epoch)`` alone, and a stream can
        start at any epoch.
        """
        size, runs = self.cfg.batch_size, self.cfg.bucket_batches
        epoch, index, pool = first_epoch, 0, []
        rng = np.random.default_rng([self.cfg.seed, self.rank, worker, 2, epoch])
        tail: deque[tuple[int, int, list[Sample]]] = deque()  # the previous epoch's last batches
        added = 0  # samples added to the pool since the last tail batch
        for sample in self.samples(worker, workers, first_epoch):
            if sample is None:  # the epoch's samples end
                yield from tail  # an epoch shorter than the previous pool: the previous epoch ends first
                pool.sort(key=_frames)
                cut = [pool[i : i + size] for i in range(0, len(pool), size)]
                tail = deque((epoch, index + j, cut[k]) for j, k in enumerate(rng.permutation(len(cut)).tolist()))
                epoch, index, pool, added = epoch + 1, 0, [], 0
                rng = np.random.default_rng([self.cfg.seed, self.rank, worker, 2, epoch])
                continue
            pool.append(sample)
            if tail:
                added += 1
                if added == size:
                    added = 0
                    yield tail.popleft()
            if len(pool) == size * runs:
                pool.sort(key=_frames)
                start = size * int(rng.integers(runs))
                yield epoch, index, pool[start : start + size]
                index += 1
                del pool[start : start + size]

    def collate(self, samples: list[Sample], rng: np.random.Generator) -> dict:
        """Padded float16 poses, frame sizes and per-sample fields as numpy arrays and lists.

        Numpy, not tensors: a worker hands each tensor to the trainer through a new shared-memory segment, which
        for batches this small costs more than the whole batch's decoding; numpy arrays travel in the pickle.
        """
        lengths = np.array([min(len(s.pose), self.cfg.max_frames) for s in samples])
        pose = np.zeros((len(samples), int(lengths.max()), 79, 3), dtype=np.float16)
        for i, (s, n) in enumerate(zip(samples, lengths)):
            start = int(rng.integers(len(s.pose) - n + 1))  # random crop of long clips
            pose[i, :n] = s.pose[start : start + n]
        return {"pose": pose, "lengths": lengths,
                "frame_size": np.array([(s.meta.width, s.meta.height) for s in samples], dtype=np.int32),
                "texts": [s.meta.text if s.meta.paired else "" for s in samples],
                "languages": [s.meta.text_language if s.meta.paired else "en" for s in samples],
                "paired": np.array([s.meta.paired for s in samples]), "keys": [s.key for s in samples]}

    def __iter__(self) -> Iterator[dict]:
        """Collated batches, each with its ``position``: (logical worker, epoch, index in the epoch)."""
        info = get_worker_info()
        worker = ((info.id if info else 0) + self.offset) % self.workers
        first_epoch, consumed = self.start[worker]
        for epoch, index, samples in self.batches(worker, self.workers, first_epoch):
            if epoch == first_epoch and index < consumed:  # consumed before a resume: read, not collated
                continue
            # The crop generator of each batch is its own, so a batch does not depend on the batches before it.
            batch = self.collate(samples, np.random.default_rng([self.cfg.seed, self.rank, worker, 3, epoch, index]))
            batch["position"] = (worker, epoch, index)
            yield batch


def prepare_batch(raw: dict, tokenizer: MBartTextTokenizer, mask_ratio: float, seed: int, rank: int,
                  index: int) -> Batch:
    """Tokenisation, batched normalisation and masking; the mask depends only on (seed, rank, batch index)."""
    pose = torch.from_numpy(raw["pose"])
    frame_mask = torch.arange(pose.shape[1])[None, :] < torch.from_numpy(raw["lengths"])[:, None]
    input_ids, text_mask = tokenizer(raw["texts"], raw["languages"])
    # One thread: a batch is a few hundred thousand numbers, where an OpenMP team costs more than it saves, and
    # while dataloader workers keep the other cores busy its threads spin against them (benchmarks/loader.py).
    with torch_threads(1):
        pose = normalize_pose(pose, torch.from_numpy(raw["frame_size"]))
        joint_mask = hierarchical_mask(frame_mask, mask_ratio, np.random.default_rng([seed, rank, index]))
    return Batch(pose=pose, frame_mask=frame_mask, joint_mask=joint_mask, input_ids=input_ids, text_mask=text_mask,
                 paired=torch.from_numpy(raw["paired"]), keys=raw["keys"])


def _as_collated(batch: dict) -> dict:
    return batch


class PretrainLoader:
    """Normalised, masked batches for one rank, resumable exactly from :meth:`state_dict`.

    Dataloader workers hand out batches in turn, so global batch ``i`` comes from logical worker ``i % workers``.
    The state is the number of batches consumed and, per logical worker, its position after its last consumed
    batch: ``[epoch, batches of that epoch]``. Resuming, each worker reads its position's epoch again, without
    collating the batches it had already given, and goes on: a resume reads at most an epoch of each worker's
    shards, however many epochs were done, and the stream continues bit for bit as if uninterrupted (the masks
    keep their global batch index, dataloader worker ``w`` runs logical worker ``(w + consumed) % workers``).
    """

    def __init__(self, cfg: PretrainDataConfig, tokenizer: MBartTextTokenizer, *, rank: int = 0,
                 world_size: int = 1, mask_ratio: float = 0.4, state: dict | None = None):
        self.cfg, self.tokenizer, self.rank, self.mask_ratio = cfg, tokenizer, rank, mask_ratio
        self.stream = PretrainStream(cfg, rank, world_size)
        workers = self.stream.workers
        state = state if state is not None else {"batches": 0, "workers": [[0, 0]] * workers}
        if len(state["workers"]) != workers:
            raise ValueError(f"a loader state of {len(state['workers'])} workers for {workers}: resume with the "
                             f"data.num_workers of the saved run")
        self.consumed = int(state["batches"])
        self.positions = [[int(epoch), int(batches)] for epoch, batches in state["workers"]]

    def state_dict(self) -> dict:
        """JSON-able position after the last batch yielded: ``{"batches": n, "workers": [[epoch, batches], ...]}``."""
        return {"batches": self.consumed, "workers": [list(p) for p in self.positions]}

    def __iter__(self) -> Iterator[Batch]:
        stream = self.stream
        stream.start = [(epoch, batches) for epoch, batches in self.positions]
        stream.offset = self.consumed % stream.workers
        # Its own generator: a DataLoader otherwise draws its base seed from the global torch RNG, which would
        # shift dropout after a resume restored that RNG.
        # collate_fn keeps the worker's numpy arrays as they are (the default would turn them into tensors).
        loader = DataLoader(stream, batch_size=None, num_workers=self.cfg.num_workers, collate_fn=_as_collated,
                            persistent_workers=self.cfg.num_workers > 0,
                            generator=torch.Generator().manual_seed(self.cfg.seed))
        for raw in loader:
            worker, epoch, index = raw["position"]
            if worker != self.consumed % stream.workers:
                raise RuntimeError(f"batch {self.consumed} came from worker {worker}, not worker "
                                   f"{self.consumed % stream.workers}: the dataloader no longer takes workers in turn")
            batch = prepare_batch(raw, self.tokenizer, self.mask_ratio, self.cfg.seed, self.rank, self.consumed)
            self.consumed += 1
            self.positions[worker] = [epoch, index + 1]
            yield batch


def pretrain_batches(cfg: PretrainDataConfig, tokenizer: MBartTextTokenizer, *, rank: int = 0, world_size: int = 1,
                     mask_ratio: float = 0.4, state: dict | None = None) -> Iterator[Batch]:
    """The batches of a :class:`PretrainLoader` (resumed from ``state`` when given), for callers that keep no
    state."""
    return iter(PretrainLoader(cfg, tokenizer, rank=rank, world_size=world_size, mask_ratio=mask_ratio, state=state))
