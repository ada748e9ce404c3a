"""Models: the per-frame pose embedding, the SignPoseEncoder and the pre-training model."""

from slp.models.gcn import PoseEmbedding, PoseEmbeddingConfig
from slp.models.pretraining import LossConfig, PretrainingModel, PretrainModelConfig
from slp.models.sign_encoder import SignEncoderConfig, SignPoseEncoder, StreamConfig

__all__ = [
    "LossConfig",
    "PoseEmbedding",
    "PoseEmbeddingConfig",
    "PretrainModelConfig",
    "PretrainingModel",
    "SignEncoderConfig",
    "SignPoseEncoder",
    "StreamConfig",
]
