"""Pre-training objectives: hierarchical masking, masked reconstruction, fine-grained sign-text InfoNCE."""

from slp.losses.contrastive import (
    SymmetricInfoNCE,
    coarse_similarity,
    fine_grained_similarity,
    gather_features,
)
from slp.losses.masking import hierarchical_mask
from slp.losses.reconstruction import masked_reconstruction_loss

__all__ = [
    "SymmetricInfoNCE",
    "coarse_similarity",
    "fine_grained_similarity",
    "gather_features",
    "hierarchical_mask",
    "masked_reconstruction_loss",
]
