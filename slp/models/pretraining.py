"""The pre-training model: SignPoseEncoder + pose decoder + sign / text projectors + the two objectives.

L = L_PR + λ · L_STC (paper eq. 6). The encoder sees the pose with the masked joints hidden (coordinates and
confidence zeroed, i.e. indistinguishable from a missed detection) and the decoder reconstructs their x, y.
The frozen text encoder runs outside this module (the runner calls it under ``no_grad``), so its features
arrive as inputs and no gradient or optimiser state ever touches it. Unpaired samples feed L_PR only.

:meth:`PretrainingModel.save_pretrained` exports what fine-tuning can start from: the encoder and, when L_STC
trained it, the sign-text alignment module. The pose decoder stays behind: no head reconstructs poses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from slp.losses.reconstruction import masked_reconstruction_loss
from slp.models.alignment import (
    ALIGNMENT_CONFIG_NAME,
    ALIGNMENT_WEIGHTS_NAME,
    AlignmentConfig,
    ProjectionMLP,
    SignTextAlignment,
    remove_text_model_copy,
)
from slp.models.sign_encoder import CARD_NAME, SignEncoderConfig, SignPoseEncoder
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
    similarity: Literal["fine", "coarse"] = "fine"  # Table XVIII
    temperature_init: float = 0.07
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    chunk_size: int = 32  # sign samples per block of the fine-grained matrix


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
        if not (loss_cfg.use_pr or loss_cfg.use_stc):
            raise ValueError("at least one of use_pr / use_stc must be on")
        self.model_cfg, self.loss_cfg = model_cfg, loss_cfg
        self.encoder = SignPoseEncoder(model_cfg.encoder)
        dim = self.encoder.output_dim
        self.decoder = PoseDecoder(dim, model_cfg.decoder_hidden)
        self.alignment = SignTextAlignment(dim, model_cfg.text_dim, AlignmentConfig(
            embed_dim=model_cfg.embed_dim, pool_window=model_cfg.pool_window, similarity=loss_cfg.similarity,
            temperature_init=loss_cfg.temperature_init, min_temperature=loss_cfg.min_temperature,
            max_temperature=loss_cfg.max_temperature, chunk_size=loss_cfg.chunk_size))

    def forward(
        self,
        pose: torch.Tensor,
        frame_mask: torch.Tensor,
        joint_mask: torch.Tensor,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        paired: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``pose (B, T, 79, 3)`` normalised, ``frame_mask (B, T)``, ``joint_mask (B, T, 79)`` True = masked.

        ``loss`` is what this rank back-propagates; the other entries are detached values of the global batch (every
        rank's samples), the same on every rank: ``objective`` = ``loss_pr`` + λ · ``loss_stc``. Averaging the ranks'
        gradients of ``loss`` (DeepSpeed, DDP) gives the gradient of ``objective``, so the training does not depend
        on how the global batch is split over ranks.
        """
        visible = pose.masked_fill(joint_mask[..., None], 0.0)
        features = self.encoder(visible, frame_mask)
        zero = features.new_zeros((), dtype=torch.float32)
        loss_pr = value_pr = loss_stc = value_stc = zero
        if self.loss_cfg.use_pr:
            loss_pr, value_pr = masked_reconstruction_loss(self.decoder(features), pose, joint_mask)
        if self.loss_cfg.use_stc:
            if text_features is None or text_mask is None or paired is None:
                raise ValueError("use_stc needs text_features, text_mask and paired")
            loss_stc, value_stc = self.alignment(features, frame_mask, text_features, text_mask, paired.bool())
        lam = self.loss_cfg.lambda_stc
        return {
            "loss": loss_pr + lam * loss_stc,
            "objective": value_pr + lam * value_stc,
            "loss_pr": value_pr,
            "loss_stc": value_stc,
            "temperature": self.alignment.temperature().detach(),
        }

    def save_pretrained(self, directory: str | Path, *, text_model: str, **card: Any) -> Path:
        """The encoder's :meth:`SignPoseEncoder.save_pretrained` folder (``card``: its model card's keywords) plus,
        when L_STC was on, the alignment module (:meth:`SignTextAlignment.save_pretrained`, trained against the text
        encoder ``text_model``, copied into the folder when it is a local one) with its section in the card. Without
        L_STC the projectors and τ never learnt: nothing of them is exported, and files an earlier export left in
        ``directory`` are removed, so no head starts from projectors that do not belong to this encoder."""
        directory = self.encoder.save_pretrained(directory, **card)
        if not self.loss_cfg.use_stc:
            for name in (ALIGNMENT_CONFIG_NAME, ALIGNMENT_WEIGHTS_NAME):
                (directory / name).unlink(missing_ok=True)
            remove_text_model_copy(directory)
            return directory
        self.alignment.save_pretrained(directory, text_model=text_model)
        with open(directory / CARD_NAME, "a", encoding="utf-8") as f:
            f.write("\n" + self.alignment.model_card_section(text_model) + "\n")
        return directory
