"""Typed config of ``slp-finetune`` (``configs/finetune/<task>/<dataset>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slp.models.sign_encoder import SignEncoderConfig


@dataclass
class FinetuneDataConfig:
    shards: list[str] = field(default_factory=list)  # glob patterns of curated shards
    dataset: str = ""  # keep samples of this dataset only ("" = all)
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    num_frames: int = 32  # ISLR: frames sampled per clip (random in training, centred in evaluation)
    labels: list[int] = field(default_factory=list)  # ISLR vocabulary subset (e.g. WLASL100); empty = all


@dataclass
class FinetuneOptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encoder_lr_scale: float = 0.1  # the pre-trained encoder learns 10× slower (paper §IV-A)
    batch_size: int = 64
    epochs: int = 60
    step_size: int = 20  # StepLR: ×gamma every step_size epochs
    gamma: float = 0.1


@dataclass
class FinetuneConfig:
    task: str = "islr"
    output: str = "runs/finetune"
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    encoder: SignEncoderConfig = field(default_factory=SignEncoderConfig)  # used when no --pretrained is given
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    label_smoothing: float = 0.2
    num_classes: int = 0  # 0: 1 + the largest label of the training split
    mixed_precision: str = "no"  # "no" | "bf16" (accelerate)
    seed: int = 0
