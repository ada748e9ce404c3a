"""The pose encoder and the pre-training model: shapes, padding, export, objectives' wiring, global batch."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slp.losses import hierarchical_mask
from slp.models import (
    LossConfig,
    PoseEmbeddingConfig,
    PretrainingModel,
    PretrainModelConfig,
    SignEncoderConfig,
    SignPoseEncoder,
    StreamConfig,
)
from slp.text import FrozenTextEncoder

TINY_ENCODER = SignEncoderConfig(
    embedding=PoseEmbeddingConfig(channels=[16, 16], manual_dim=32, non_manual_dim=32),
    manual=StreamConfig(width=32, num_layers=1, num_heads=4),
    non_manual=StreamConfig(width=48, num_layers=1, num_heads=4),
    max_frames=64, dropout=0.0,
)


def _tiny(**loss) -> PretrainingModel:
    torch.manual_seed(0)
    return PretrainingModel(PretrainModelConfig(encoder=TINY_ENCODER, text_dim=16, embed_dim=24, decoder_hidden=32),
                            LossConfig(**loss))


def _batch(b=6, t=20, m=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = torch.rand(b, t, 79, 3, generator=g) * 2 - 1
    pose[..., 2] = torch.rand(b, t, 79, generator=g)
    frame_mask = torch.ones(b, t, dtype=torch.bool)
    frame_mask[1, 12:] = False
    frame_mask[3, 5:] = False
    text = torch.randn(b, m, 16, generator=g)
    text_mask = torch.ones(b, m, dtype=torch.bool)
    text_mask[2, 3:] = False
    joint_mask = hierarchical_mask(frame_mask, 0.4, np.random.default_rng(seed))
    return pose, frame_mask, joint_mask, text, text_mask, torch.ones(b, dtype=torch.bool)


@pytest.mark.parametrize("embedding", ["gcn", "linear"])
def test_encoder_shapes_and_padding_invariance(embedding):
    cfg = SignEncoderConfig(**{**TINY_ENCODER.__dict__, "embedding": PoseEmbeddingConfig(
        kind=embedding, channels=[16], manual_dim=32, non_manual_dim=32)})
    encoder = SignPoseEncoder(cfg).eval()
    pose, frame_mask, *_ = _batch()
    out = encoder(pose, frame_mask)
    assert out.shape == (6, 20, 80) and encoder.output_dim == 80
    changed = pose.clone()
    changed[~frame_mask] = 5.0
    torch.testing.assert_close(encoder(changed, frame_mask)[frame_mask], out[frame_mask], atol=1e-5, rtol=1e-5)
    assert (out[~frame_mask] == 0).all()


def test_stream_switches_change_the_output_width():
    manual_only = SignPoseEncoder(SignEncoderConfig(**{**TINY_ENCODER.__dict__, "use_non_manual": False}))
    assert manual_only.output_dim == 32 and manual_only.non_manual is None
    with pytest.raises(ValueError):
        SignPoseEncoder(SignEncoderConfig(**{**TINY_ENCODER.__dict__, "use_manual": False, "use_non_manual": False}))


def test_save_and_from_pretrained_round_trip(tmp_path):
    encoder = SignPoseEncoder(TINY_ENCODER).eval()
    encoder.save_pretrained(tmp_path / "enc")
    assert {p.name for p in (tmp_path / "enc").iterdir()} == {"model.safetensors", "config.json"}
    loaded = SignPoseEncoder.from_pretrained(tmp_path / "enc").eval()
    assert loaded.config == encoder.config
    pose, frame_mask, *_ = _batch()
    torch.testing.assert_close(loaded(pose, frame_mask), encoder(pose, frame_mask))


def test_paper_configuration_matches_table_iii():
    cfg = PretrainModelConfig()
    assert (cfg.encoder.manual.num_layers, cfg.encoder.manual.width, cfg.encoder.non_manual.width) == (8, 1024, 1536)
    assert (cfg.embed_dim, cfg.pool_window, cfg.encoder.max_frames) == (512, 4, 256)
    assert (LossConfig().mask_ratio, LossConfig().lambda_stc, LossConfig().temperature_init) == (0.4, 1.0, 0.07)


def test_masked_joints_are_hidden_from_the_encoder():
    model = _tiny().eval()
    pose, frame_mask, joint_mask, text, text_mask, paired = _batch()
    seen = {}

    def keep_input(module, args, output):
        seen["pose"] = args[0]

    model.encoder.register_forward_hook(keep_input)
    model(pose, frame_mask, joint_mask, text, text_mask, paired)
    assert (seen["pose"][joint_mask] == 0).all()
    assert torch.equal(seen["pose"][~joint_mask], pose[~joint_mask])


def test_unpaired_samples_do_not_enter_the_contrastive_loss():
    model = _tiny().eval()
    pose, frame_mask, joint_mask, text, text_mask, paired = _batch()
    paired[4] = False
    base = model(pose, frame_mask, joint_mask, text, text_mask, paired)
    text2 = text.clone()
    text2[4] += 3.0  # the unpaired sample's (absent) text changes nothing
    assert model(pose, frame_mask, joint_mask, text2, text_mask, paired)["loss_stc"] == base["loss_stc"]
    paired[:] = False
    paired[0] = True
    out = model(pose, frame_mask, joint_mask, text, text_mask, paired)
    assert out["loss_stc"].item() == 0.0 and torch.isfinite(out["loss"])
    pr_only = _tiny(use_stc=False).eval()(pose, frame_mask, joint_mask)
    assert pr_only["loss_stc"].item() == 0.0 and pr_only["loss_pr"].item() > 0


def test_frozen_text_encoder_gets_no_gradient_during_pretraining(tiny_mbart_dir):
    text_encoder = FrozenTextEncoder.from_pretrained(tiny_mbart_dir)
    torch.manual_seed(0)
    model = PretrainingModel(PretrainModelConfig(encoder=TINY_ENCODER, text_dim=text_encoder.d_model, embed_dim=24,
                                                 decoder_hidden=32), LossConfig())
    torch.nn.ModuleDict({"model": model, "text": text_encoder}).train()
    pose, frame_mask, joint_mask, *_ = _batch(b=4)
    pose, frame_mask, joint_mask = pose[:3], frame_mask[:3], joint_mask[:3]
    texts = ["This word is apple.", "今天很好。", "Das Wetter ist gut."]
    features, mask = text_encoder.encode(texts, ["en", "zh", "de"])
    out = model(pose, frame_mask, joint_mask, features, mask, torch.ones(3, dtype=torch.bool))
    out["loss"].backward()
    assert not text_encoder.training
    assert all(p.grad is None and not p.requires_grad for p in text_encoder.parameters())
    assert model.text_projector.net[0].weight.grad is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loss(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = _tiny(use_pr=False, chunk_size=2).eval()
    pose, frame_mask, joint_mask, text, text_mask, paired = _batch()
    rows = slice(0, 4) if rank == 0 else slice(4, 6)  # unequal local batches
    out = model(pose[rows], frame_mask[rows], joint_mask[rows], text[rows], text_mask[rows], paired[rows])
    out["loss"].backward()
    queue.put((rank, out["loss_stc"].item(), model.sign_projector.net[0].weight.grad.abs().sum().item()))
    dist.destroy_process_group()


def test_global_batch_loss_over_two_ranks_equals_single_process_loss():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_loss, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = _tiny(use_pr=False, chunk_size=2).eval()(*_batch())["loss_stc"].item()
    assert results[0][1] == pytest.approx(single, rel=1e-5) and results[1][1] == pytest.approx(single, rel=1e-5)
    assert all(grad > 0 for _, _, grad in results)
