"""The models' configurations: plain dataclasses that import no torch (as a Hugging Face ``configuration_*.py``).

The model files (:mod:`slp.models.gcn`, :mod:`slp.models.sign_encoder`, :mod:`slp.models.heatmap`,
:mod:`slp.models.stepnet`) build their modules from these and re-export them. They live apart so that loading and
checking a run's config (``slp.config.load_config``) imports neither torch nor transformers: a mistake in a config
file or an override is reported at once, not after the model code has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: The frozen text encoder the models are trained with, by Hub name (loaded by :mod:`slp.text.mbart`).
DEFAULT_TEXT_ENCODER = "facebook/mbart-large-cc25"


@dataclass
class PoseEmbeddingConfig:
    kind: Literal["gcn", "linear"] = "gcn"  # Table XIX
    channels: list[int] = field(default_factory=lambda: [64, 64, 128])  # GCN block widths
    manual_dim: int = 512
    non_manual_dim: int = 512
    dropout: float = 0.0


@dataclass
class StreamConfig:
    """One transformer stream (manual or non-manual)."""

    width: int = 1024  # d1 (manual) or d2 (non-manual)
    num_layers: int = 8
    num_heads: int = 16
    ffn_ratio: float = 4.0


@dataclass
class SignEncoderConfig:
    embedding: PoseEmbeddingConfig = field(default_factory=PoseEmbeddingConfig)
    manual: StreamConfig = field(default_factory=lambda: StreamConfig(width=1024))
    non_manual: StreamConfig = field(default_factory=lambda: StreamConfig(width=1536))
    positions: Literal["learned", "sinusoidal"] = "learned"
    max_frames: int = 256
    dropout: float = 0.1
    use_manual: bool = True  # Table XV ablations: switch a stream off
    use_non_manual: bool = True


@dataclass
class HeatmapConfig:
    size: int = 112  # H = W of the heatmaps (NLA-SLR: 112)
    sigma: float = 4.0  # Gaussian σ in heatmap pixels (NLA-SLR: 4 at 112)
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # output channels of each stage
    spatial_kernel: int = 3
    temporal_kernel: int = 3
    two_clip: bool = True  # VKNet: a network on all frames and one on a crop of half of them, laterally connected


@dataclass
class StepNetConfig:
    width: int = 512  # W: part, global, attention and fused features
    num_segments: int = 3  # N overlapping temporal segments, one GRU each (paper: 3)
    segment_frames: int = 16  # frames per segment; with 32 frames and N = 3 the segments start at 0, 8, 16
    dropout: float = 0.1  # on the pooled features before each classifier
    spatial: bool = True  # part-level spatial modelling (f_s and its partial predictions)
    temporal: bool = True  # part-level temporal modelling (f_t and its partial prediction)
