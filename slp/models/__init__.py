"""Models: the per-frame pose embedding, the SignPoseEncoder and the pre-training model.

The names load on first use (PEP 562), so that importing a submodule such as :mod:`slp.models.configuration`
(the torch-free configs) does not load torch through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slp.lazy import lazy_names

if TYPE_CHECKING:
    from slp.models.configuration import PoseEmbeddingConfig, SignEncoderConfig, StreamConfig
    from slp.models.gcn import PoseEmbedding
    from slp.models.pretraining import LossConfig, PretrainingModel, PretrainModelConfig
    from slp.models.sign_encoder import SignPoseEncoder

#: Each public name → the module that defines it.
_MODULE_OF = {
    "LossConfig": "slp.models.pretraining",
    "PoseEmbedding": "slp.models.gcn",
    "PoseEmbeddingConfig": "slp.models.configuration",
    "PretrainModelConfig": "slp.models.pretraining",
    "PretrainingModel": "slp.models.pretraining",
    "SignEncoderConfig": "slp.models.configuration",
    "SignPoseEncoder": "slp.models.sign_encoder",
    "StreamConfig": "slp.models.configuration",
}

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


__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
