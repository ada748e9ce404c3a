"""Per-frame pose embedding: a spatial GCN over the 79-node skeleton (paper §III-B), or a linear baseline.

Each frame is embedded on its own — ST-GCN spatial blocks with a learnable refinement of the normalised
adjacency, no temporal convolution and no inter-frame edges — because temporal modelling is the transformers'
job. The node features of the manual points (body, hands) and of the non-manual points (face, mouth) are then
flattened group by group and projected to one manual and one non-manual frame feature. The ``linear`` option
(Table XIX) skips the graph and projects the raw points of each group.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slp.models.configuration import PoseEmbeddingConfig
from slp.pose.layout import MANUAL_INDICES, NON_MANUAL_INDICES, NUM_POINTS, adjacency


def normalized_adjacency() -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of the 79-node skeleton."""
    a = adjacency(self_loops=True)
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return torch.from_numpy((a * d[:, None]) * d[None, :]).float()


class SpatialGraphBlock(nn.Module):
    """ST-GCN spatial block: X ← act(BN((Â + B) X W)) + residual, with B a learnable adjacency refinement."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("adjacency", normalized_adjacency(), persistent=False)
        self.refinement = nn.Parameter(torch.zeros(NUM_POINTS, NUM_POINTS))
        self.linear = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Identity() if in_channels == out_channels else nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 79, C)
        # Buffers are not cast with the parameters under DeepSpeed bf16: follow the weights' dtype.
        graph = self.adjacency.to(self.refinement.dtype) + self.refinement
        mixed = torch.einsum("vw,nwc->nvc", graph, self.linear(x))
        return self.dropout(self.act(self.norm(mixed))) + self.residual(x)


class PoseEmbedding(nn.Module):
    """``(B, T, 79, 3)`` normalised poses → manual ``(B, T, manual_dim)`` and non-manual ``(B, T, non_manual_dim)``."""

    def __init__(self, cfg: PoseEmbeddingConfig):
        super().__init__()
        if cfg.kind not in ("gcn", "linear"):
            raise ValueError(f"pose embedding kind {cfg.kind!r} is not 'gcn' or 'linear'")
        self.cfg = cfg
        self.register_buffer("manual_index", torch.from_numpy(MANUAL_INDICES), persistent=False)
        self.register_buffer("non_manual_index", torch.from_numpy(NON_MANUAL_INDICES), persistent=False)
        if cfg.kind == "gcn":
            widths = [3, *cfg.channels]
            self.blocks = nn.ModuleList(
                SpatialGraphBlock(a, b, cfg.dropout) for a, b in zip(widths[:-1], widths[1:])
            )
            node_dim = widths[-1]
        else:
            self.blocks = nn.ModuleList()
            node_dim = 3
        self.node_dim = node_dim  # C of node_features
        self.manual_proj = nn.Linear(len(MANUAL_INDICES) * node_dim, cfg.manual_dim)
        self.non_manual_proj = nn.Linear(len(NON_MANUAL_INDICES) * node_dim, cfg.non_manual_dim)

    def node_features(self, pose: torch.Tensor) -> torch.Tensor:
        """``(B, T, 79, 3)`` → per-point features ``(B, T, 79, C)`` (the raw points for the linear kind), before
        the points are flattened into groups: heads that model body parts (StepNet) read them part by part."""
        b, t = pose.shape[:2]
        x = pose.reshape(b * t, NUM_POINTS, pose.shape[-1])
        for block in self.blocks:
            x = block(x)
        return x.reshape(b, t, NUM_POINTS, -1)

    def forward(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.node_features(pose)
        manual = self.manual_proj(x[:, :, self.manual_index].flatten(2))
        non_manual = self.non_manual_proj(x[:, :, self.non_manual_index].flatten(2))
        return manual, non_manual
