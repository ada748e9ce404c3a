"""The pre-training model: SignPoseEncoder + pose decoder + sign / text projectors + the two objectives.

L = L_PR + λ · L_STC (paper eq. 6). The encoder sees the pose with the masked joints hidden (coordinates and
confidence zeroed, i.e. indistinguishable from a missed detection) and the decoder reconstructs their x, y.
The frozen text encoder runs outside this module (the runner calls it under ``no_grad``), so its features
arrive as inputs and no gradient or optimiser state ever touches it. Unpaired samples feed L_PR only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from slp.losses.contrastive import SymmetricInfoNCE, coarse_similarity, fine_grained_similarity, gather_features
from slp.losses.reconstruction import masked_reconstruction_loss
from slp.models.sign_encoder import SignEncoderConfig, SignPoseEncoder
from slp.pose.layout import NUM_POINTS


@dataclass
class PretrainModelConfig:
    encoder: SignEncoderConfig = field(default_factory=SignEncoderConfig)
    text_dim: int = 1024  # d_model of the text encoder (mbart-large-cc25: 1024)
    embed_dim: int = 512  # d_e
    pool_window: int = 4  # s: frames averaged into one sign clip
    decoder_hidden: int = 512


@dataclass
class LossConfig:
    mask_ratio: float = 0.4  # m (Table XVII)
    lambda_stc: float = 1.0  # λ (Table XII)
    use_pr: bool = True  # Table XIV switches
    use_stc: bool = True
    similarity: str = "fine"  # "fine" | "coarse" (Table XVIII)
    temperature_init: float = 0.07
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    chunk_size: int = 32  # sign samples per block of the fine-grained matrix


class ProjectionMLP(nn.Module):
    """Two-layer MLP projector."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def average_pool_clips(features: torch.Tensor, frame_mask: torch.Tensor, window: int):
    """AvgPool_s over valid frames: ``(B, T, D)`` → clips ``(B, ceil(T / s), D)`` and their validity mask."""
    b, t, d = features.shape
    pad = (-t) % window
    feats = F.pad(features * frame_mask[..., None], (0, 0, 0, pad)).reshape(b, -1, window, d)
    counts = F.pad(frame_mask.to(features.dtype), (0, pad)).reshape(b, -1, window).sum(dim=-1)
    return feats.sum(dim=2) / counts.clamp(min=1)[..., None], counts > 0


class PoseDecoder(nn.Module):
    """Two-layer MLP from F_SE back to the 79 × 2 coordinates of every frame."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.net = ProjectionMLP(in_dim, NUM_POINTS * 2, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).reshape(*features.shape[:-1], NUM_POINTS, 2)


class PretrainingModel(nn.Module):
    def __init__(self, model_cfg: PretrainModelConfig, loss_cfg: LossConfig):
        super().__init__()
        if loss_cfg.similarity not in ("fine", "coarse"):
            raise ValueError(f"similarity {loss_cfg.similarity!r} is not 'fine' or 'coarse'")
        if not (loss_cfg.use_pr or loss_cfg.use_stc):
            raise ValueError("at least one of use_pr / use_stc must be on")
        self.model_cfg, self.loss_cfg = model_cfg, loss_cfg
        self.encoder = SignPoseEncoder(model_cfg.encoder)
        dim = self.encoder.output_dim
        self.decoder = PoseDecoder(dim, model_cfg.decoder_hidden)
        self.sign_projector = ProjectionMLP(dim, model_cfg.embed_dim)
        self.text_projector = ProjectionMLP(model_cfg.text_dim, model_cfg.embed_dim)
        self.contrastive = SymmetricInfoNCE(loss_cfg.temperature_init, loss_cfg.min_temperature,
                                            loss_cfg.max_temperature)

    def sign_embeddings(self, features: torch.Tensor, frame_mask: torch.Tensor):
        clips, clip_mask = average_pool_clips(features, frame_mask, self.model_cfg.pool_window)
        return self.sign_projector(clips), clip_mask

    def similarity(self, sign, sign_mask, text, text_mask) -> torch.Tensor:
        if self.loss_cfg.similarity == "coarse":
            return coarse_similarity(sign, sign_mask, text, text_mask)
        return fine_grained_similarity(sign, sign_mask, text, text_mask, self.loss_cfg.chunk_size)

    def contrastive_loss(self, features, frame_mask, text_features, text_mask, paired) -> torch.Tensor:
        sign, sign_mask = self.sign_embeddings(features, frame_mask)
        text = self.text_projector(text_features)
        sign, sign_mask, text, text_mask, paired = gather_features(sign, sign_mask, text, text_mask, paired)
        keep = paired.nonzero().squeeze(1)
        if keep.numel() < 2:  # no negatives: the term is absent, but the graph still reaches its parameters
            return 0.0 * (sign.sum() + text.sum() + self.contrastive.log_temperature.sum())
        similarity = self.similarity(sign[keep], sign_mask[keep], text[keep], text_mask[keep])
        return self.contrastive(similarity)

    def forward(
        self,
        pose: torch.Tensor,
        frame_mask: torch.Tensor,
        joint_mask: torch.Tensor,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        paired: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``pose (B, T, 79, 3)`` normalised, ``frame_mask (B, T)``, ``joint_mask (B, T, 79)`` True = masked."""
        visible = pose.masked_fill(joint_mask[..., None], 0.0)
        features = self.encoder(visible, frame_mask)
        zero = features.new_zeros(())
        loss_pr = (masked_reconstruction_loss(self.decoder(features), pose, joint_mask)
                   if self.loss_cfg.use_pr else zero)
        loss_stc = zero
        if self.loss_cfg.use_stc:
            if text_features is None or text_mask is None or paired is None:
                raise ValueError("use_stc needs text_features, text_mask and paired")
            loss_stc = self.contrastive_loss(features, frame_mask, text_features, text_mask, paired.bool())
        return {
            "loss": loss_pr + self.loss_cfg.lambda_stc * loss_stc,
            "loss_pr": loss_pr.detach(),
            "loss_stc": loss_stc.detach(),
            "temperature": self.contrastive.temperature.detach(),
        }
