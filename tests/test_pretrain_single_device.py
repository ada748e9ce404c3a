"""The one-device pre-training loop (pretrain/single_device.py): a run stopped after a checkpoint and called again
ends where an uninterrupted run ends, bit for bit (one process, one thread count)."""

from __future__ import annotations

import json

import pytest
import torch

import pretrain.single_device as single_device
from pretrain.config import PretrainRunConfig
from slp.config import load_config
from slp.synthetic import SyntheticConfig, write_synthetic_corpus

STEPS, EVERY = 6, 2


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_mbart_dir) -> PretrainRunConfig:
    out = tmp_path_factory.mktemp("single_device")
    write_synthetic_corpus(out, SyntheticConfig(num_glosses=6, num_signers=4, dev_signers=1, test_signers=1,
                                                repetitions=1, sentences_per_signer=3, shard_samples=10))
    # Dropout on, and both objectives: the RNG state and the loader position must come back with the weights.
    return load_config(PretrainRunConfig, "configs/pretrain/tiny.yaml", [
        f"data.shards={json.dumps([str(out / 'shards' / '*.tar')])}", f"text.name_or_path={tiny_mbart_dir}",
        "data.batch_size=4", "data.max_frames=32", "model.encoder.max_frames=32", f"output={out / 'run'}"])


def _stop_after(batches: int):
    """A stand-in for the loop's progress bar that stops the run (as a kill would) when batch ``batches + 1`` is
    asked for."""
    def bar(iterable, **_):
        for k, item in enumerate(iterable):
            if k == batches:
                raise KeyboardInterrupt
            yield item
    return bar


def test_a_stopped_run_called_again_ends_as_an_uninterrupted_run(config, tmp_path, monkeypatch):
    straight_losses: list[dict[str, float]] = []
    straight = single_device.pretrain_on_one_device(config, STEPS, "cpu", straight_losses).state_dict()

    checkpoint = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        patch.setattr(single_device, "tqdm", _stop_after(EVERY + 1))  # stopped in the step after a checkpoint
        with pytest.raises(KeyboardInterrupt):
            single_device.pretrain_on_one_device(config, STEPS, "cpu", [], checkpoint, checkpoint_every=EVERY)
    assert torch.load(checkpoint, weights_only=False)["step"] == EVERY

    losses: list[dict[str, float]] = []
    resumed = single_device.pretrain_on_one_device(config, STEPS, "cpu", losses, checkpoint, checkpoint_every=EVERY)
    assert losses == straight_losses and len(losses) == STEPS
    assert resumed.state_dict().keys() == straight.keys()
    assert all(torch.equal(resumed.state_dict()[name], straight[name]) for name in straight)
    assert not checkpoint.exists()  # a complete run leaves no checkpoint to resume from
