"""SignPoseEncoder: per-frame pose embedding + unshared manual and non-manual transformer encoders.

F_SE = concat(manual encoder(manual frame features), non-manual encoder(non-manual frame features)), a
``t × (d1 + d2)`` sequence (paper §III-B). This is the object pre-training exports and every fine-tuning head
starts from: :meth:`SignPoseEncoder.save_pretrained` writes ``model.safetensors``, ``config.json``, a model card
``README.md`` (:mod:`slp.models.model_card`) and ``training.json`` (what the card states about the training, for
programs: the weights' sha256, the training data, the estimator, the pre-training run's figures; a fine-tuned head's
card cites the encoder it started from by it); :meth:`SignPoseEncoder.from_pretrained` reads such a folder or a
Hugging Face Hub repository.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slp.config import from_dict
from slp.models.configuration import SignEncoderConfig, StreamConfig
from slp.models.gcn import PoseEmbedding
from slp.models.model_card import render_model_card, sha256_of_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
TRAINING_RECORD_NAME = "training.json"


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


class StreamEncoder(nn.Module):
    """Input projection, positions, and a pre-norm transformer encoder with a padding mask."""

    def __init__(self, in_dim: int, cfg: StreamConfig, positions: str, max_frames: int, dropout: float):
        super().__init__()
        self.input = nn.Linear(in_dim, cfg.width)
        if positions == "learned":
            self.positions = nn.Parameter(torch.zeros(max_frames, cfg.width))
            nn.init.normal_(self.positions, std=0.02)
        elif positions == "sinusoidal":
            self.register_buffer("positions", sinusoidal_positions(max_frames, cfg.width), persistent=False)
        else:
            raise ValueError(f"positions {positions!r} is not 'learned' or 'sinusoidal'")
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.num_heads, int(cfg.width * cfg.ffn_ratio), dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        # Nested tensors would drop padded positions and change the output shape; keep dense tensors.
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, norm=nn.LayerNorm(cfg.width),
                                             enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.positions.shape[0]:
            raise ValueError(f"{t} frames exceed max_frames={self.positions.shape[0]}")
        h = self.input(x)
        h = h + self.positions[:t].to(h.dtype)
        return self.encoder(h, src_key_padding_mask=~frame_mask)


class SignPoseEncoder(nn.Module):
    """``(B, T, 79, 3)`` normalised poses + ``(B, T)`` valid-frame mask → F_SE ``(B, T, output_dim)``."""

    def __init__(self, cfg: SignEncoderConfig):
        super().__init__()
        if not (cfg.use_manual or cfg.use_non_manual):
            raise ValueError("at least one of use_manual / use_non_manual must be on")
        self.config = cfg
        self.embedding = PoseEmbedding(cfg.embedding)
        args = (cfg.positions, cfg.max_frames, cfg.dropout)
        self.manual = StreamEncoder(cfg.embedding.manual_dim, cfg.manual, *args) if cfg.use_manual else None
        self.non_manual = (
            StreamEncoder(cfg.embedding.non_manual_dim, cfg.non_manual, *args) if cfg.use_non_manual else None
        )

    @property
    def output_dim(self) -> int:
        return (self.config.manual.width if self.manual else 0) + (
            self.config.non_manual.width if self.non_manual else 0
        )

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        manual, non_manual = self.embedding(pose)
        streams = []
        if self.manual is not None:
            streams.append(self.manual(manual, frame_mask))
        if self.non_manual is not None:
            streams.append(self.non_manual(non_manual, frame_mask))
        out = torch.cat(streams, dim=-1)
        return out.masked_fill(~frame_mask[..., None], 0.0)

    def save_pretrained(self, directory: str | Path, *, pose_estimator: str = "",
                        training_data: Mapping[str, Any] | None = None,
                        metrics: Mapping[str, Any] | None = None,
                        pretraining: Mapping[str, Any] | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json``, the model card ``README.md`` (a folder ready to upload
        to the Hugging Face Hub) and ``training.json``; the keyword arguments go into the card
        (:func:`render_model_card`) and the record."""
        card = render_model_card(self.config, num_parameters=sum(p.numel() for p in self.parameters()),
                                 output_dim=self.output_dim, pose_estimator=pose_estimator,
                                 training_data=training_data, metrics=metrics, pretraining=pretraining)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, directory / WEIGHTS_NAME)
        (directory / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        (directory / CARD_NAME).write_text(card, encoding="utf-8")
        record = {"weights_sha256": sha256_of_file(directory / WEIGHTS_NAME), "pose_estimator": pose_estimator,
                  "training_data": training_data, "pretraining": pretraining}
        (directory / TRAINING_RECORD_NAME).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
        return directory

    @staticmethod
    def training_record(name_or_path: str | Path, *, revision: str | None = None) -> dict[str, Any]:
        """The ``training.json`` of a :meth:`save_pretrained` folder or Hub repository (as :meth:`from_pretrained`
        finds it); an export without one (written before it existed) gives ``{"weights_sha256": ...}`` alone."""
        directory = export_folder(name_or_path, revision)
        path = directory / TRAINING_RECORD_NAME
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        return {"weights_sha256": sha256_of_file(directory / WEIGHTS_NAME)}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None) -> SignPoseEncoder:
        """Load a :meth:`save_pretrained` folder, or a Hugging Face Hub repository id (``"org/name"``, at
        ``revision``) when ``name_or_path`` is not an existing folder; the Hub download goes through
        ``huggingface_hub``'s cache, so ``HF_HUB_OFFLINE=1`` loads a repository downloaded before."""
        directory = export_folder(name_or_path, revision)
        cfg = from_dict(SignEncoderConfig, json.loads((directory / CONFIG_NAME).read_text()), str(directory))
        model = cls(cfg)
        model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        return model


def export_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder of an encoder export: ``name_or_path`` when it is a folder, else the Hub repository
    ``name_or_path`` (at ``revision``) through ``huggingface_hub``'s cache (``HF_HUB_OFFLINE=1``: one downloaded
    before)."""
    directory = Path(name_or_path)
    if directory.is_dir():
        return directory
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(name_or_path), revision=revision,
                                  allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, TRAINING_RECORD_NAME]))
