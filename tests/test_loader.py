"""The streaming pre-training loader: coverage per epoch, determinism, filters, cropping, batched preparation."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch

from slp.data.loader import PretrainDataConfig, PretrainStream, key_fraction, pretrain_batches
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
    """The stream's samples of ``epoch`` (every epoch holds the same number of samples)."""
    size = sum(1 for _ in stream.epoch_reads(0, 0, 1))
    return [s.key for s in itertools.islice(stream.samples(0, 1), epoch * size, (epoch + 1) * size)]


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


def test_batches_are_padded_cropped_masked_and_resumable(corpus, tokenizer):
    cfg = _cfg(corpus)
    batches = list(itertools.islice(pretrain_batches(cfg, tokenizer, mask_ratio=0.4), 6))
    for b in batches:
        assert b.pose.shape[0] == 4 and b.pose.shape[1] <= 48 and b.pose.dtype == torch.float32
        lengths = b.frame_mask.sum(1)
        assert lengths.max() == b.pose.shape[1]
        assert (b.pose[~b.frame_mask] == 0).all() and not b.joint_mask[~b.frame_mask].any()
        assert b.pose[..., :2].abs().max() <= 1.0 + 1e-5  # normalised
        assert b.input_ids.shape == b.text_mask.shape and b.paired.all()
    skipped = list(itertools.islice(pretrain_batches(cfg, tokenizer, mask_ratio=0.4, skip=3), 3))
    for a, b in zip(batches[3:], skipped):
        assert a.keys == b.keys and torch.equal(a.pose, b.pose) and torch.equal(a.joint_mask, b.joint_mask)


def _first_batches(cfg: PretrainDataConfig, count: int) -> list[list]:
    return list(itertools.islice(PretrainStream(cfg).batches(0, 1), count))


def _padding_fraction(batches: list[list]) -> float:
    frames = [[len(s.pose) for s in batch] for batch in batches]
    return 1 - sum(map(sum, frames)) / sum(max(f) * len(f) for f in frames)


def test_length_aware_batching_pads_less_and_drops_nothing_across_epochs(corpus):
    bucketed = _first_batches(_cfg(corpus, splits=[], bucket_batches=4), 60)  # 3 epochs of 80 samples
    counts = Counter(s.key for batch in bucketed for s in batch)
    assert len(counts) == 80 and set(counts.values()) <= {2, 3, 4} and sum(counts.values()) == 240
    unsorted = _padding_fraction(_first_batches(_cfg(corpus, splits=[], bucket_batches=1), 60))
    assert _padding_fraction(bucketed) < 0.75 * unsorted, unsorted


@pytest.mark.parametrize("shuffle_buffer", [30, 80, 100])  # smaller than an epoch, equal, larger
def test_every_epoch_is_whole_before_the_next(corpus, shuffle_buffer):
    stream = PretrainStream(_cfg(corpus, splits=[], shuffle_buffer=shuffle_buffer))
    keys = [s.key for s in itertools.islice(stream.samples(0, 1), 4 * 80)]
    assert all(len(set(keys[e * 80 : (e + 1) * 80])) == 80 for e in range(4))


def test_filters_that_keep_nothing_are_a_clear_error(corpus):
    with pytest.raises(ValueError, match="no sample in the .* shards passes the filters"):
        next(PretrainStream(_cfg(corpus, datasets=["wlasl"])).samples(0, 1))


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
