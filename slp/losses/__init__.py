"""Pre-training objectives: hierarchical masking, masked reconstruction, fine-grained sign-text InfoNCE."""

from slp.losses.contrastive import (
    LearnableTemperature,
    coarse_similarity,
    fine_grained_similarity,
    global_infonce,
)
from slp.losses.masking import hierarchical_mask
from slp.losses.reconstruction import masked_reconstruction_loss

__all__ = [
    "LearnableTemperature",
    "coarse_similarity",
    "fine_grained_similarity",
    "global_infonce",
    "hierarchical_mask",
    "masked_reconstruction_loss",
]
