"""Typed config of a pre-training run (``configs/pretrain/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from slp.data.loader import PretrainDataConfig
from slp.models.pretraining import LossConfig, PretrainModelConfig
from slp.text.mbart import DEFAULT_TEXT_ENCODER


@dataclass
class TextConfig:
    name_or_path: str = DEFAULT_TEXT_ENCODER  # hub name or local directory of a saved mBART


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    epochs: float = 100.0  # converted to steps with the manifest's sample count and the global batch
    max_steps: int = 0  # > 0 overrides epochs
    warmup_fraction: float = 0.1  # then linear decay to 0
    grad_clip: float = 1.0


@dataclass
class DeepSpeedConfig:
    config: str = "configs/deepspeed/zero1.json"
    zero_stage: Literal[0, 1, 2, 3] = 1
    bf16: bool = False


@dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep: int = 3


@dataclass
class PretrainRunConfig:
    output: str = "runs/pretrain"
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    text: TextConfig = field(default_factory=TextConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    samples_per_epoch: int = 0  # 0: counted from the manifest.parquet files beside the shards
    log_every: int = 10
    seed: int = 0
