"""Typed config of ``slp-finetune`` (``configs/finetune/<task>/<dataset>.yaml``).

The shared parts (data, encoder, optimiser) sit at the top level; each task's head has its own section
(``islr``, ``cslr``, ``slt``, ``retrieval``) read only when that task runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# From the torch-free configuration module, so that loading and checking this config imports no model code.
from slp.models.configuration import DEFAULT_TEXT_ENCODER, HeatmapConfig, SignEncoderConfig, StepNetConfig


@dataclass
class FinetuneDataConfig:
    shards: list[str] = field(default_factory=list)  # glob patterns of curated shards
    dataset: str = ""  # keep samples of this dataset only ("" = all)
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    num_frames: int = 32  # ISLR: one frame per equal segment (random in it in training, its middle in evaluation)
    max_frames: int = 256  # CSLR / SLT / retrieval: longer clips are evenly subsampled to this many frames
    labels: list[int] = field(default_factory=list)  # ISLR vocabulary subset (e.g. WLASL100); empty = all
    num_workers: int = 2  # training DataLoader worker processes per rank collating batches (0: in the main process)


@dataclass
class FinetuneOptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encoder_lr_scale: float = 0.1  # the pre-trained encoder learns 10× slower (paper §IV-A)
    batch_size: int = 64
    epochs: int = 60
    schedule: Literal["step", "cosine"] = "step"  # StepLR (ISLR / CSLR) or warm-up + cosine (SLT / retrieval)
    step_size: int = 20  # StepLR: ×gamma every step_size epochs
    gamma: float = 0.1
    warmup: float = 0.0  # cosine: fraction of all steps spent warming up linearly
    # The pre-trained parts learn nothing for the first encoder_frozen_epochs, while the new head learns on their
    # features (linear probing, then fine-tuning: LP-FT), then their lr rises linearly over encoder_warmup_epochs.
    encoder_frozen_epochs: int = 0
    encoder_warmup_epochs: int = 0
    grad_clip: float = 0.0  # 0 = no clipping


@dataclass
class NLAConfig:
    """NLA-SLR options of the ISLR head (slp.losses.nla), each switchable; all off = the paper's plain head."""

    label_smoothing: bool = False  # language-aware label smoothing, ε = islr.label_smoothing
    temperature: float = 0.5  # τ of the language-aware smoothing weights
    inter_mixup: bool = False  # inter-modality mixup: auxiliary classifier on sign feature + each mapped gloss
    inter_mixup_weight: float = 1.0  # λ of the auxiliary loss (the paper gives no value)
    classifier_integration: bool = False  # θ1 ← μθ1 + (1 − μ)θ2 every step (needs inter_mixup)
    integration_base: float = 0.99  # μ rises by a cosine from this to 1 over all training steps
    intra_mixup: bool = False  # blend two clips' poses and targets, λ ~ Beta(α, α)
    intra_mixup_alpha: float = 0.8
    # Gloss embeddings (class → gloss from the training split's meta.gloss): the frozen text encoder's mean
    # word-piece features by default, or a word-vector text file (`gloss v1 v2 …` per line) when set.
    text_model: str = DEFAULT_TEXT_ENCODER
    word_vectors: str = ""
    lowercase_glosses: bool = True  # glosses are written in capitals; word models know the lower-case word


@dataclass
class ISLRStepNetConfig(StepNetConfig):
    enabled: bool = False  # StepNet (slp.models.stepnet) between the encoder and the classifier


@dataclass
class ISLRHeatmapConfig(HeatmapConfig):
    # NLA-SLR's keypoint stream (slp.models.heatmap) in place of the pose encoder: the points rendered as heatmaps,
    # read by a separable 3-D CNN (two laterally connected networks with two_clip); data.num_frames = 64 as VKNet
    enabled: bool = False


@dataclass
class ISLRConfig:
    label_smoothing: float = 0.2
    num_classes: int = 0  # 0: 1 + the largest label of the training split
    nla: NLAConfig = field(default_factory=NLAConfig)
    stepnet: ISLRStepNetConfig = field(default_factory=ISLRStepNetConfig)
    heatmap: ISLRHeatmapConfig = field(default_factory=ISLRHeatmapConfig)


@dataclass
class CSLRConfig:
    hidden: int = 512  # temporal conv channels and BiLSTM hidden size (per direction: hidden // 2)
    lstm_layers: int = 2
    beam_size: int = 10  # CTC prefix beam search; 1 = greedy
    wer_cleanup: Literal["none", "phoenix2014", "phoenix2014t", "csl-daily"] = "none"  # slp.metrics.wer's clean-ups
    dropout: float = 0.1


@dataclass
class SLTConfig:
    text_model: str = DEFAULT_TEXT_ENCODER  # its sentencepiece tokenizer tokenises the targets
    decoder_layers: int = 3
    decoder_width: int = 512
    decoder_heads: int = 8
    dropout: float = 0.1
    max_target_tokens: int = 128
    beam_size: int = 4
    length_penalty: float = 1.0
    label_smoothing: float = 0.1


@dataclass
class RetrievalConfig:
    text_model: str = DEFAULT_TEXT_ENCODER
    embed_dim: int = 512  # d_e
    pool_window: int = 4  # s of AvgPool_s on the sign features
    temperature: float = 0.07  # initial τ (learnable, as in pre-training)
    similarity: Literal["fine", "coarse"] = "fine"
    chunk_size: int = 32  # sign samples per block of the fine-grained training matrix (bounds its memory)
    max_text_tokens: int = 128
    train_text_encoder: bool = False  # the mBART encoder stays frozen unless set (its lr is encoder_lr_scale × lr)


@dataclass
class FinetuneConfig:
    task: str = "islr"  # a registered task (finetune.tasks)
    output: str = "runs/finetune"
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    encoder: SignEncoderConfig = field(default_factory=SignEncoderConfig)  # used when no --pretrained is given
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    islr: ISLRConfig = field(default_factory=ISLRConfig)
    cslr: CSLRConfig = field(default_factory=CSLRConfig)
    slt: SLTConfig = field(default_factory=SLTConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    mixed_precision: Literal["no", "bf16"] = "no"  # accelerate's; quote "no" in YAML, where a bare no is false
    seed: int = 0
