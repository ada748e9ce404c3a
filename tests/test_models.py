"""The pose encoder and the pre-training model: shapes, padding, export, objectives' wiring, global batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    assert {p.name for p in (tmp_path / "enc").iterdir()} == {"model.safetensors", "config.json", "README.md",
                                                               "training.json"}
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
    assert model.alignment.text_projector.net[0].weight.grad is not None


def test_paper_yaml_is_table_iii():
    """configs/pretrain/paper.yaml, as a user loads it, is the paper's pre-training (Table III, SPEC §3-5)."""
    from pathlib import Path

    from pretrain.config import PretrainRunConfig
    from slp.config import load_config

    cfg = load_config(PretrainRunConfig, Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "paper.yaml")
    enc = cfg.model.encoder
    assert (enc.embedding.kind, enc.embedding.manual_dim, enc.embedding.non_manual_dim) == ("gcn", 512, 512)
    assert (enc.manual.num_layers, enc.non_manual.num_layers, enc.manual.width, enc.non_manual.width) == (8, 8, 1024,
                                                                                                          1536)
    assert (enc.max_frames, cfg.data.max_frames, cfg.data.max_text_tokens) == (256, 256, 128)
    assert (cfg.model.text_dim, cfg.model.embed_dim, cfg.model.pool_window) == (1024, 512, 4)
    assert (cfg.loss.mask_ratio, cfg.loss.lambda_stc, cfg.loss.similarity, cfg.loss.temperature_init) == (
        0.4, 1.0, "fine", 0.07)
    assert cfg.loss.use_pr and cfg.loss.use_stc and cfg.data.data_fraction == 1.0
    assert cfg.text.name_or_path == "facebook/mbart-large-cc25"
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.betas, o.epochs, o.warmup_fraction) == (1e-4, 0.1, [0.9, 0.98], 100, 0.1)
    assert cfg.data.batch_size * 8 == 512  # global batch 512 on the paper's 8 GPUs
    assert (cfg.deepspeed.bf16, cfg.deepspeed.zero_stage) == (True, 2)
    tests = {"wlasl/test", "msasl/test", "nmfs_csl/test", "slr500/test", "phoenix14/test", "phoenix14t/test",
             "csl_daily/test", "how2sign/test"}
    assert tests <= set(cfg.data.exclude)  # downstream test splits never enter pre-training


@pytest.mark.parametrize("override,key", [("loss.similarity=medium", "similarity"),
                                          ("model.encoder.embedding.kind=mlp", "kind"),
                                          ("deepspeed.zero_stage=4", "zero_stage")])
def test_enumerated_options_are_checked_when_the_config_loads(override, key):
    from pathlib import Path

    from pretrain.config import PretrainRunConfig
    from slp.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=key):
        load_config(PretrainRunConfig, Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "tiny.yaml",
                    [override])
