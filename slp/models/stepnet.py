"""StepNet (Shen et al., "StepNet: Spatial-temporal Part-aware Network for Isolated Sign Language Recognition") on
the SignPoseEncoder's features: part-level spatial and temporal modelling with a loss on every partial prediction.

StepNet refines a backbone's features with two parallel branches (paper §3):

- part-level spatial modelling (eqs. 1-2): part features, each re-scaled by a gate G(h) = h · sigmoid(MLP(h)), are
  summed in pairs, g_lr = G_l(h_l) + G_r(h_r) and g_tb = G_t(h_t) + G_b(h_b), and the global feature attends onto
  the pool of both pairs: f_s = softmax(Q_s K_pᵀ) V_p + V_s;
- part-level temporal modelling (eqs. 3-4): N overlapping temporal segments, one GRU each (weights not shared),
  attended onto by a long-term GRU over the whole clip: f_t = softmax(Q_t K'_pᵀ) V'_p + V_t;
- f_st = MLP([f_s; f_t]) is the final feature. The ISLR head's classifier on f_st is the prediction at inference
  (paper §3.4: "we only deploy the top prediction q_st"); every other prediction of eq. 5 is a training signal.

Either branch can be switched off (``spatial`` / ``temporal``, the rows of the paper's Table 7a): f_st is then the
fusion MLP over the remaining branch's feature alone, and the switched-off branch, with its partial predictions, is
not built. Both off is refused: without either branch StepNet is the global feature alone, i.e. the ISLR head without
StepNet (``islr.stepnet.enabled: false``, Table 7a's baseline row).

The paper cuts an RGB feature map into halves because it has no keypoints; on poses the parts are real body parts:

- left / right: the two hands, each from the encoder's per-point graph features of that hand (flattened and
  projected frame by frame). The encoder's manual stream mixes both hands with the body, the graph features still
  hold each hand apart;
- top / bottom: the face and the hands with the body, i.e. the non-manual (face + mouth) and manual (body + hands)
  streams of F_SE. They are exactly that split, already temporally contextualised by the pre-trained encoder.

The global feature is F_SE projected to the StepNet width. Everything stays per frame until masked means over the
valid frames, attention never reads a padding frame and the GRUs run forward in time, so padding changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slp.models.configuration import StepNetConfig
from slp.models.pretraining import ProjectionMLP
from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.layout import LEFT_HAND, RIGHT_HAND

#: The predictions StepNet trains besides the final one (eq. 5), in the order of the paper.
PARTIAL_PREDICTIONS: tuple[str, ...] = (
    "left", "right", "top", "bottom", "left_right", "top_bottom", "global", "spatial", "temporal",
)
#: Those each branch makes (``global``, the projected backbone feature, belongs to neither).
SPATIAL_PREDICTIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "left_right", "top_bottom", "spatial")
TEMPORAL_PREDICTIONS: tuple[str, ...] = ("temporal",)


def masked_mean(x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid frames: ``(B, T, D)``, ``(B, T)`` → ``(B, D)``."""
    mask = frame_mask[..., None].to(x.dtype)
    return (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def segment_windows(lengths: torch.Tensor, num_segments: int, segment_frames: int, max_frames: int):
    """Frame indices ``(B, N, L)`` and validity ``(B, N, L)`` of N overlapping segments of each clip.

    A clip of n valid frames has segments of min(n, segment_frames) frames whose starts are spread evenly from 0 to
    the last possible start (integer division), so they overlap whenever N · segment_frames > n; L is
    ``min(segment_frames, max_frames)``. Invalid positions come after the valid ones and point at a valid frame.
    """
    span = lengths.clamp(max=segment_frames)
    room = lengths - span
    k = torch.arange(num_segments, device=lengths.device)
    start = room[:, None] * k // max(num_segments - 1, 1)  # (B, N)
    offset = torch.arange(min(segment_frames, max_frames), device=lengths.device)
    valid = (offset < span[:, None, None]).expand(-1, num_segments, -1)
    return torch.where(valid, start[..., None] + offset, start[..., None]), valid


class Gate(nn.Module):
    """G(h) = h · sigmoid(MLP(h)) (eq. 1): puts parts of different scales on a par before they are summed."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = ProjectionMLP(width, width, hidden=max(width // 4, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * torch.sigmoid(self.mlp(h))


class PartAttention(nn.Module):
    """softmax(Q Kᵀ / √W) V + V_q (eqs. 2 and 4): a sequence gathers from a pool of part features.

    The query sequence yields Q and its own value V_q; the pool yields K and V. The paper writes no √W scaling;
    it is the usual one and keeps the softmax from saturating at large widths.
    """

    def __init__(self, width: int):
        super().__init__()
        self.query_value = nn.Linear(width, 2 * width)
        self.key_value = nn.Linear(width, 2 * width)

    def forward(self, queries: torch.Tensor, pool: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, W)`` queries, ``(B, P, W)`` pool and its ``(B, P)`` validity → ``(B, T, W)``."""
        q, own_value = self.query_value(queries).chunk(2, dim=-1)
        k, v = self.key_value(pool).chunk(2, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=pool_mask[:, None, :]) + own_value


class SpatialPartModel(nn.Module):
    """Gated part pairs (left-right hands, top-bottom face and manual) attended onto by the global feature."""

    def __init__(self, width: int, node_dim: int, manual_dim: int, non_manual_dim: int):
        super().__init__()
        hand_points = LEFT_HAND.stop - LEFT_HAND.start
        self.manual_dim = manual_dim
        self.parts = nn.ModuleDict({
            "left": nn.Linear(hand_points * node_dim, width),
            "right": nn.Linear(hand_points * node_dim, width),
            "top": nn.Linear(non_manual_dim, width),
            "bottom": nn.Linear(manual_dim, width),
        })
        self.gates = nn.ModuleDict({name: Gate(width) for name in self.parts})
        self.attention = PartAttention(width)

    def forward(self, global_seq: torch.Tensor, features: torch.Tensor, nodes: torch.Tensor,
                frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-frame ``(B, T, W)`` part features, pair features and f_s (key ``spatial``)."""
        inputs = {
            "left": nodes[:, :, LEFT_HAND].flatten(2),
            "right": nodes[:, :, RIGHT_HAND].flatten(2),
            "top": features[..., self.manual_dim :],  # F_SE = [manual | non-manual]
            "bottom": features[..., : self.manual_dim],
        }
        out = {name: project(inputs[name]) for name, project in self.parts.items()}
        gated = {name: self.gates[name](h) for name, h in out.items()}
        out["left_right"] = gated["left"] + gated["right"]
        out["top_bottom"] = gated["top"] + gated["bottom"]
        pool = torch.cat([out["left_right"], out["top_bottom"]], dim=1)
        out["spatial"] = self.attention(global_seq, pool, frame_mask.repeat(1, 2))
        return out


class TemporalPartModel(nn.Module):
    """Segment GRUs (short-term) attended onto by a whole-clip GRU (long-term)."""

    def __init__(self, width: int, num_segments: int, segment_frames: int):
        super().__init__()
        self.num_segments = num_segments
        self.segment_frames = segment_frames
        self.long_term = nn.GRU(width, width, batch_first=True)
        self.segments = nn.ModuleList(nn.GRU(width, width, batch_first=True) for _ in range(num_segments))
        self.attention = PartAttention(width)

    def forward(self, global_seq: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """f_t ``(B, T, W)``."""
        b, t, w = global_seq.shape
        index, valid = segment_windows(frame_mask.sum(dim=1), self.num_segments, self.segment_frames, t)
        # GRUs run in float32: cuDNN has no bf16 RNN kernels on every setup, and these GRUs are small.
        with torch.autocast(device_type=global_seq.device.type, enabled=False):
            x = global_seq.float()
            segments = x.gather(1, index.flatten(1)[..., None].expand(-1, -1, w)).unflatten(1, index.shape[1:])
            short = torch.cat([gru(segments[:, n])[0] for n, gru in enumerate(self.segments)], dim=1)
            long = self.long_term(x)[0]
        return self.attention(long.to(global_seq.dtype), short.to(global_seq.dtype), valid.flatten(1))


@dataclass
class StepNetOutput:
    feature: torch.Tensor  # f_st (B, W): the ISLR head's classifier on it is the prediction (q_st)
    partial_logits: dict[str, torch.Tensor]  # PARTIAL_PREDICTIONS → (B, classes), each trained with the same loss


class StepNet(nn.Module):
    """F_SE ``(B, T, d1 + d2)``, the encoder's per-point features ``(B, T, 79, C)`` (``None`` without the spatial
    branch, the only one that reads them) and the frame mask → f_st and the logits of every partial prediction."""

    def __init__(self, cfg: StepNetConfig, encoder: SignPoseEncoder, num_classes: int):
        super().__init__()
        if not (cfg.spatial or cfg.temporal):
            raise ValueError("StepNet with neither the spatial nor the temporal branch is the plain ISLR head: "
                             "turn one on, or StepNet off (islr.stepnet.enabled=false)")
        if cfg.spatial and (encoder.manual is None or encoder.non_manual is None):
            raise ValueError("StepNet's top / bottom parts are the encoder's non-manual / manual streams: "
                             "both must be on (encoder.use_manual and encoder.use_non_manual)")
        width = cfg.width
        self.global_projection = nn.Linear(encoder.output_dim, width)
        self.spatial = SpatialPartModel(width, encoder.embedding.node_dim, encoder.config.manual.width,
                                        encoder.config.non_manual.width) if cfg.spatial else None
        self.temporal = TemporalPartModel(width, cfg.num_segments, cfg.segment_frames) if cfg.temporal else None
        self.branches = tuple(name for name, on in (("spatial", cfg.spatial), ("temporal", cfg.temporal)) if on)
        self.fusion = ProjectionMLP(len(self.branches) * width, width)
        self.dropout = nn.Dropout(cfg.dropout)
        off = (() if cfg.spatial else SPATIAL_PREDICTIONS) + (() if cfg.temporal else TEMPORAL_PREDICTIONS)
        self.classifiers = nn.ModuleDict({name: nn.Linear(width, num_classes)
                                          for name in PARTIAL_PREDICTIONS if name not in off})

    def forward(self, features: torch.Tensor, nodes: torch.Tensor | None, frame_mask: torch.Tensor) -> StepNetOutput:
        global_seq = self.global_projection(features)
        sequences = {"global": global_seq}
        if self.spatial is not None:
            sequences.update(self.spatial(global_seq, features, nodes, frame_mask))
        if self.temporal is not None:
            sequences["temporal"] = self.temporal(global_seq, frame_mask)
        pooled = {name: masked_mean(seq, frame_mask) for name, seq in sequences.items()}
        fused = self.fusion(torch.cat([pooled[name] for name in self.branches], dim=-1))
        logits = {name: classifier(self.dropout(pooled[name])) for name, classifier in self.classifiers.items()}
        return StepNetOutput(self.dropout(fused), logits)
