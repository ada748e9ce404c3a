"""The streaming pre-training loader: coverage per epoch, determinism, filters, cropping, batched preparation,
exact resume at a cost independent of the epochs done."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch

from slp.data.loader import Batch, PretrainDataConfig, PretrainLoader, PretrainStream, key_fraction, pretrain_batches
from slp.data.schema import Sample, SampleMeta
from slp.data.shards import write_shard
from slp.models import (
    LossConfig,
    PoseEmbeddingConfig,
    PretrainingModel,
    PretrainModelConfig,
    SignEncoderConfig,
    StreamConfig,
)
from slp.synthetic import SyntheticConfig, write_synthetic_corpus
from slp.text.mbart import MBartTextTokenizer

CORPUS = SyntheticConfig(num_glosses=6, num_signers=5, dev_signers=1, test_signers=1, repetitions=2,
                         sentences_per_signer=4, shard_samples=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(out, CORPUS)
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_mbart_dir):
    return MBartTextTokenizer.from_pretrained(tiny_mbart_dir, max_length=32)


def _cfg(corpus, **kw):
    defaults = dict(shards=[str(corpus / "shards" / "*.tar")], batch_size=4, shuffle_buffer=5, bucket_batches=2,
                    max_frames=48)
    return PretrainDataConfig(**{**defaults, **kw})


def _epoch_keys(stream: PretrainStream, epoch: int) -> list[str]:
    """The stream's samples of ``epoch``: those after its ``epoch``-th end marker (None), up to the next one."""
    keys: list[str] = []
    ends = 0
    for sample in stream.samples(0, 1):
        if sample is None:
            ends += 1
            if ends > epoch:
                return keys
        elif ends == epoch:
            keys.append(sample.key)


def test_ranks_cover_every_kept_sample_exactly_once_per_epoch(corpus):
    cfg = _cfg(corpus, splits=["train", "dev"])
    keys = Counter(k for rank in range(2) for k in _epoch_keys(PretrainStream(cfg, rank, 2), 0))
    expected = 4 * (6 * 2 + 4)  # train + dev signers
    assert len(keys) == expected and set(keys.values()) == {1}


def test_order_is_a_function_of_seed_and_epoch(corpus):
    stream = PretrainStream(_cfg(corpus))
    assert _epoch_keys(stream, 0) == _epoch_keys(PretrainStream(_cfg(corpus)), 0)
    assert _epoch_keys(stream, 0) != _epoch_keys(stream, 1)
    assert sorted(_epoch_keys(stream, 0)) == sorted(_epoch_keys(stream, 1))
    assert _epoch_keys(stream, 0) != _epoch_keys(PretrainStream(_cfg(corpus, seed=1)), 0)


def test_filters_exclusions_and_data_fraction(corpus):
    all_splits = _cfg(corpus, splits=[])
    excluded = _cfg(corpus, splits=[], exclude=["synthetic/test"])
    keys_all = set(_epoch_keys(PretrainStream(all_splits), 0))
    keys_excl = set(_epoch_keys(PretrainStream(excluded), 0))
    assert len(keys_all) == 5 * 16 and len(keys_all - keys_excl) == 16
    half = set(_epoch_keys(PretrainStream(_cfg(corpus, splits=[], data_fraction=0.5)), 0))
    assert half == {k for k in keys_all if key_fraction(k) < 0.5} and 0.3 < len(half) / len(keys_all) < 0.7


def test_batches_are_padded_cropped_masked_and_normalised(corpus, tokenizer):
    cfg = _cfg(corpus)
    batches = list(itertools.islice(pretrain_batches(cfg, tokenizer, mask_ratio=0.4), 6))
    for b in batches:
        assert b.pose.shape[0] == 4 and b.pose.shape[1] <= 48 and b.pose.dtype == torch.float32
        lengths = b.frame_mask.sum(1)
        assert lengths.max() == b.pose.shape[1]
        assert (b.pose[~b.frame_mask] == 0).all() and not b.joint_mask[~b.frame_mask].any()
        assert b.pose[..., :2].abs().max() <= 1.0 + 1e-5  # normalised
        assert b.input_ids.shape == b.text_mask.shape and b.paired.all()
    stream = PretrainStream(cfg)
    _, _, samples = next(stream.batches(0, 1))
    raw = stream.collate(samples, np.random.default_rng(0))  # each clip's frame size goes to the normalisation
    assert raw["frame_size"].tolist() == [[s.meta.width, s.meta.height] for s in samples]


def _first_batches(cfg: PretrainDataConfig, count: int) -> list[list]:
    return [samples for _, _, samples in itertools.islice(PretrainStream(cfg).batches(0, 1), count)]


def _padding_fraction(batches: list[list]) -> float:
    frames = [[len(s.pose) for s in batch] for batch in batches]
    return 1 - sum(map(sum, frames)) / sum(max(f) * len(f) for f in frames)


def test_length_aware_batching_pads_less_and_drops_nothing_across_epochs(corpus):
    bucketed = _first_batches(_cfg(corpus, splits=[], bucket_batches=4), 60)  # 3 epochs of 80 samples
    assert all(len({s.key for batch in bucketed[e * 20 : (e + 1) * 20] for s in batch}) == 80 for e in range(3))
    unsorted = _padding_fraction(_first_batches(_cfg(corpus, splits=[], bucket_batches=1), 60))
    assert _padding_fraction(bucketed) < 0.75 * unsorted, unsorted


@pytest.mark.parametrize("shuffle_buffer", [30, 80, 100])  # smaller than an epoch, equal, larger
def test_every_epoch_is_whole_before_the_next(corpus, shuffle_buffer):
    stream = PretrainStream(_cfg(corpus, splits=[], shuffle_buffer=shuffle_buffer))
    items = list(itertools.islice(stream.samples(0, 1), 4 * 81))
    assert [i for i, s in enumerate(items) if s is None] == [80, 161, 242, 323]  # each epoch's end is marked
    keys = [s.key for s in items if s is not None]
    assert all(len(set(keys[e * 80 : (e + 1) * 80])) == 80 for e in range(4))
    # A stream started at an epoch gives the samples the uninterrupted stream gives from there.
    assert [s and s.key for s in itertools.islice(stream.samples(0, 1, first_epoch=2), 2 * 81)] == \
        [s and s.key for s in items[2 * 81 :]]


def test_filters_that_keep_nothing_are_a_clear_error(corpus):
    with pytest.raises(ValueError, match="no sample in the .* shards passes the filters"):
        next(PretrainStream(_cfg(corpus, datasets=["wlasl"])).samples(0, 1))


def test_shards_that_are_all_corrupt_are_not_blamed_on_the_filters(tmp_path):
    for i in range(2):
        (tmp_path / f"bad-{i}.tar").write_bytes(b"not a tar archive at all " * 100)
    cfg = PretrainDataConfig(shards=[str(tmp_path / "*.tar")], batch_size=2)
    with pytest.raises(ValueError, match=r"no readable sample in the 2 shards: 2 unreadable or truncated shard"):
        next(PretrainStream(cfg).samples(0, 1))


def test_too_few_shards_for_the_readers_is_a_clear_error(corpus):
    cfg = _cfg(corpus, num_workers=4)
    with pytest.raises(ValueError, match="at least one shard"):
        PretrainStream(cfg, 0, 8)


class _ShardCount(torch.utils.data.IterableDataset):
    """Each dataloader worker counts what iter_samples gives it for the same shard."""

    def __init__(self, shard: str):
        super().__init__()
        self.shard = shard

    def __iter__(self):
        from slp.data.shards import iter_samples

        yield torch.utils.data.get_worker_info().id, sum(1 for _ in iter_samples([self.shard]))


def test_every_dataloader_worker_reads_the_shards_it_is_given(corpus):
    # The loader splits shards by worker itself; the shard reader must not split them again (as webdataset's
    # pipeline did: a worker left with no shard looped over empty epochs forever).
    shard = sorted(str(p) for p in (corpus / "shards").glob("*.tar"))[0]
    loader = torch.utils.data.DataLoader(_ShardCount(shard), batch_size=None, num_workers=2)
    counts = dict(loader)
    assert set(counts) == {0, 1} and counts[0] == counts[1] == CORPUS.shard_samples


def test_two_workers_give_batches_from_both(corpus, tokenizer):
    cfg = _cfg(corpus, splits=[], num_workers=2)
    keys = [k for b in itertools.islice(pretrain_batches(cfg, tokenizer), 8) for k in b.keys]
    assert len(keys) == 32 and len(set(keys)) == 32


def _same(a: Batch, b: Batch) -> bool:
    tensors = ("pose", "frame_mask", "joint_mask", "input_ids", "text_mask", "paired")
    return a.keys == b.keys and all(torch.equal(getattr(a, name), getattr(b, name)) for name in tensors)


def _run(cfg: PretrainDataConfig, tokenizer, count: int, rank: int = 0, world_size: int = 1,
         state: dict | None = None) -> tuple[list[Batch], list[dict], PretrainLoader]:
    """``count`` batches of a loader, its state after each, and the loader."""
    loader = PretrainLoader(cfg, tokenizer, rank=rank, world_size=world_size, mask_ratio=0.4, state=state)
    batches, states = [], []
    for batch in itertools.islice(loader, count):
        batches.append(batch)
        states.append(loader.state_dict())
    return batches, states, loader


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("world_size", [1, 2])
def test_a_resumed_stream_continues_bit_for_bit(corpus, tokenizer, num_workers, world_size):
    cfg = _cfg(corpus, splits=[], num_workers=num_workers)
    workers = max(1, num_workers)
    for rank in range(world_size):  # each rank's stream, computed in this process
        batches, states, _ = _run(cfg, tokenizer, 90, rank, world_size)
        assert json.loads(json.dumps(states[-1])) == states[-1]
        # The position of batch i: (epoch, batches of that epoch) of the worker that gave it.
        position = [state["workers"][i % workers] for i, state in enumerate(states)]
        inside = 3
        boundary = next(i + 1 for i in range(len(states)) if position[i][0] == 0 and position[i + workers][0] == 1)
        later = next(i + 1 for i in range(len(states)) if position[i] == [3, 3])
        assert later + 6 <= len(batches)
        for k in (inside, boundary, later):
            resumed, resumed_states, _ = _run(cfg, tokenizer, 6, rank, world_size, states[k - 1])
            assert all(_same(a, b) for a, b in zip(batches[k : k + 6], resumed, strict=True)), (rank, k)
            assert resumed_states == states[k : k + 6]


def _equal_size_shards(folder, shards: int = 8, per_shard: int = 10) -> None:
    """Shards whose samples have the same sizes in the same order: n samples cost the same bytes to read whatever
    the shard order, so reads of different epochs compare byte for byte."""
    for shard in range(shards):
        rng = np.random.default_rng(shard)
        samples = []
        for i in range(per_shard):
            frames = 6 + 3 * i
            pose = rng.uniform(0, 1, (frames, 79, 3)).astype(np.float16)
            meta = SampleMeta(dataset="synthetic", split="train", sign_language="ASL", text_language="en",
                              source_id=f"{shard:03d}-{i:03d}", fps=25.0, width=1280, height=720, frame_end=frames,
                              text="This word is book.", label=i, paired=True)
            samples.append(Sample(f"clip_{shard:03d}_{i:03d}", pose, meta))
        write_shard(folder / f"equal-{shard:06d}.tar", samples)


def _tiny_model(vocabulary: int) -> tuple[PretrainingModel, torch.nn.Embedding]:
    torch.manual_seed(0)
    encoder = SignEncoderConfig(embedding=PoseEmbeddingConfig(channels=[16], manual_dim=32, non_manual_dim=32),
                                manual=StreamConfig(width=32, num_layers=1, num_heads=4),
                                non_manual=StreamConfig(width=32, num_layers=1, num_heads=4), max_frames=32,
                                dropout=0.0)
    model = PretrainingModel(PretrainModelConfig(encoder=encoder, text_dim=16, embed_dim=24, decoder_hidden=32),
                             LossConfig())
    return model.eval(), torch.nn.Embedding(vocabulary, 16)  # the embedding stands in for the text encoder


def test_resume_cost_does_not_grow_with_the_epochs_done(tmp_path, tokenizer):
    _equal_size_shards(tmp_path)
    cfg = PretrainDataConfig(shards=[str(tmp_path / "*.tar")], batch_size=4, shuffle_buffer=5, bucket_batches=2,
                             max_frames=32)
    per_epoch, offset, following = 20, 7, 4  # 80 samples in batches of 4
    batches, states, uninterrupted = _run(cfg, tokenizer, 3 * per_epoch + offset + following)
    model, text = _tiny_model(len(tokenizer))

    def losses(batches: list[Batch]) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([model(b.pose, b.frame_mask, b.joint_mask, text(b.input_ids), b.text_mask,
                                      b.paired)["loss"] for b in batches])

    read = {}
    for epochs in (1, 3):
        k = epochs * per_epoch + offset
        assert states[k - 1]["workers"] == [[epochs, offset]]
        resumed, _, loader = _run(cfg, tokenizer, following, state=states[k - 1])
        read[epochs] = loader.stream.stats.bytes_read
        assert all(_same(a, b) for a, b in zip(batches[k : k + following], resumed, strict=True))
        torch.testing.assert_close(losses(resumed), losses(batches[k : k + following]), rtol=0, atol=1e-6)
    one_epoch = sum(p.stat().st_size for p in tmp_path.glob("*.tar"))
    assert 0 < read[3] <= read[1] < one_epoch
    assert read[3] < uninterrupted.stream.stats.bytes_read / 3  # which read over three epochs


def test_a_state_of_another_worker_count_is_refused(corpus, tokenizer):
    _, states, _ = _run(_cfg(corpus, num_workers=2), tokenizer, 3)
    with pytest.raises(ValueError, match="num_workers"):
        PretrainLoader(_cfg(corpus), tokenizer, state=states[-1])
