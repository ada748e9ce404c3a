"""NLA-SLR's keypoint stream (Zuo et al., "Natural Language-Assisted Sign Language Recognition", CVPR 2023) as an
ISLR backbone: the 79 points rendered as Gaussian heatmaps, read by a small S3D-style separable 3-D CNN.

NLA-SLR (§3.1) turns each frame's keypoints into one heatmap per point, K[i, j, k] = exp(-((i - y_k)² + (j - x_k)²)
/ 2σ²) at 112 × 112 with σ = 4, and feeds the heatmap sequence to the same S3D network its video stream uses.
Here the heatmaps are rendered on the fly, on the model's device, from the frame-space pose the ISLR collator gives
(x / y in [-1, 1] of the frame, confidence kept, missing points at 0): the frame is stretched onto the square
heatmap (as NLA-SLR resizes its videos to a square) and pixel i covers [i, i + 1) of the heatmap, so a coordinate
u ∈ [-1, 1] lands at pixel (u + 1) / 2 · size − 0.5. Each point's Gaussian is scaled by its confidence, so a
missing point (confidence 0) leaves its heatmap empty.

VKNet (§3.2 and the supplementary's Figure 6) runs two networks of the same architecture: one on a 64-frame clip and
one on a 32-frame temporal crop of it, with bidirectional lateral connections after every stage but the last
(B1-B4 of S3D's B1-B5): a temporal conv (kernel 3, stride 2) brings the 64-frame network's features to the 32-frame
one, a transposed temporal conv brings them back; each is added to the other network's features. The final
feature is the concatenation of both networks' global average pools, [f_32; f_64]. Here the long view is the ISLR
collator's ``num_frames`` sampled frames and the short view a crop of half of them (random in training, the
middle in evaluation); this module only has VKNet's keypoint half, so the lateral connections are the
keypoint-keypoint ones.

Padding frames (clips shorter than the batch's longest) are zeroed after every unit and left out of the pooling;
the temporal max pools follow ReLUs, so a zero never wins over a valid frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slp.losses.nla import mix_poses
from slp.models.configuration import HeatmapConfig
from slp.pose.layout import NUM_POINTS


def render_heatmaps(pose: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Frame-space poses ``(B, T, K, 3)`` (x, y in [-1, 1], confidence) → heatmaps ``(B, T, K, size, size)``.

    The 2-D Gaussian is the outer product of a row and a column profile, so rendering costs one
    ``(size, size)`` product per point rather than a distance per pixel and point."""
    grid = torch.arange(size, device=pose.device, dtype=torch.float32)
    centre = (pose[..., :2].float() + 1) / 2 * size - 0.5  # (B, T, K, 2) in pixels
    profile = torch.exp(-(grid - centre[..., None]) ** 2 / (2 * sigma**2))  # (B, T, K, 2, size)
    columns = profile[..., 0, :] * pose[..., 2, None].float().clamp(min=0)  # x profile, confidence-weighted
    return profile[..., 1, :, None] * columns[..., None, :]


def _pool_mask(mask: torch.Tensor) -> torch.Tensor:
    """A ``(B, T)`` float frame mask through the same temporal max pool as the features."""
    return F.max_pool1d(mask[:, None], 2, 2, ceil_mode=True)[:, 0]


class SeparableUnit(nn.Module):
    """S3D's separable 3-D conv: a k × k spatial conv then a k temporal conv, each with BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, spatial_kernel: int, temporal_kernel: int):
        super().__init__()
        self.spatial = nn.Conv3d(in_channels, out_channels, (1, spatial_kernel, spatial_kernel), stride=(1, 2, 2),
                                 padding=(0, spatial_kernel // 2, spatial_kernel // 2), bias=False)
        self.spatial_norm = nn.BatchNorm3d(out_channels)
        self.temporal = nn.Conv3d(out_channels, out_channels, (temporal_kernel, 1, 1),
                                  padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.temporal_norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, T, H, W)``, ``mask`` ``(B, T)`` float; padding frames come out at 0."""
        m = mask[:, None, :, None, None]
        x = F.relu(self.spatial_norm(self.spatial(x))) * m
        return F.relu(self.temporal_norm(self.temporal(x))) * m


class HeatmapStage(nn.Module):
    """A separable unit halving H and W, then (``temporal_pool``) a max pool halving T."""

    def __init__(self, in_channels: int, out_channels: int, cfg: HeatmapConfig, temporal_pool: bool):
        super().__init__()
        self.unit = SeparableUnit(in_channels, out_channels, cfg.spatial_kernel, cfg.temporal_kernel)
        self.temporal_pool = temporal_pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.unit(x, mask)
        if self.temporal_pool:
            x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1), ceil_mode=True)
            mask = _pool_mask(mask)
        return x, mask


class LateralConnection(nn.Module):
    """VKNet's bidirectional keypoint-keypoint connection between the long and the short (half as many frames)
    network: stride-2 temporal conv long → short, stride-2 transposed temporal conv short → long, each added."""

    def __init__(self, channels: int):
        super().__init__()
        self.to_short = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        self.to_long = nn.ConvTranspose3d(channels, channels, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))

    def forward(self, long: torch.Tensor, short: torch.Tensor, long_mask: torch.Tensor,
                short_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # output_size: the long network's T may be odd after ceil-mode pooling; the transposed conv then needs it.
        to_long = self.to_long(short, output_size=long.shape[2:])
        new_short = (short + self.to_short(long)) * short_mask[:, None, :, None, None]
        return (long + to_long) * long_mask[:, None, :, None, None], new_short


def heatmap_stages(cfg: HeatmapConfig) -> nn.ModuleList:
    """The stages of one network on the 79 heatmaps: each halves H and W; all but the first halve T."""
    widths = [NUM_POINTS, *cfg.channels]
    return nn.ModuleList(HeatmapStage(widths[i], widths[i + 1], cfg, temporal_pool=i > 0)
                         for i in range(len(cfg.channels)))


class HeatmapBackbone(nn.Module):
    """Frame-space poses → ``(B, output_dim)`` clip features: the single network, or VKNet's two networks with
    lateral connections and their pooled features concatenated (short first, as [f_32; f_64])."""

    def __init__(self, cfg: HeatmapConfig, num_frames: int):
        super().__init__()
        if cfg.two_clip and (num_frames < 2 or num_frames % 2):
            raise ValueError(f"islr.heatmap.two_clip crops half of data.num_frames={num_frames}: use an even count")
        self.cfg = cfg
        self.num_frames = num_frames
        self.long = heatmap_stages(cfg)
        self.short = heatmap_stages(cfg) if cfg.two_clip else None
        self.laterals = nn.ModuleList(LateralConnection(c) for c in cfg.channels[:-1]) if cfg.two_clip else None
        self.output_dim = cfg.channels[-1] * (2 if cfg.two_clip else 1)

    def views(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The clip itself, or (two clips) the clip padded to ``num_frames`` and its crop of half as many frames:
        fixed lengths keep the two networks' T at exactly 2 : 1 for the lateral connections."""
        if self.short is None:
            return [(pose, frame_mask)]
        pad = self.num_frames - pose.shape[1]
        pose = F.pad(pose, (0, 0, 0, 0, 0, pad))
        frame_mask = torch.cat([frame_mask, frame_mask.new_zeros(len(frame_mask), pad)], dim=1)
        crop = self.num_frames // 2
        lengths = frame_mask.sum(1)
        room = (lengths - crop).clamp(min=0)
        if self.training:  # a random crop inside the valid frames, from torch's RNG
            start = (torch.rand(len(room), device=room.device, dtype=torch.float64) * (room + 1)).long()
        else:
            start = room // 2
        index = start[:, None] + torch.arange(crop, device=pose.device)
        valid = index < lengths[:, None]
        index = index.clamp(max=self.num_frames - 1)
        short = pose.gather(1, index[..., None, None].expand(-1, -1, *pose.shape[2:])) * valid[..., None, None]
        return [(pose, frame_mask), (short, valid)]

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor,
                mix: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``pose`` ``(B, T, 79, 3)`` in frame space, ``frame_mask`` ``(B, T)``; ``mix`` = (partner, λ) blends
        every clip's heatmaps with its partner's (NLA-SLR's intra-modality mixup works on the heatmaps)."""
        inputs, masks = [], []
        for view, mask in self.views(pose, frame_mask):
            heatmaps = render_heatmaps(view, self.cfg.size, self.cfg.sigma)
            if mix is not None:
                mixed, mask = mix_poses(heatmaps.flatten(3), mask, *mix)
                heatmaps = mixed.view_as(heatmaps)
            inputs.append(heatmaps.transpose(1, 2))  # (B, K, T, H, W): points are the input channels
            masks.append(mask.float())
        networks = [self.long] if self.short is None else [self.long, self.short]
        for i in range(len(self.cfg.channels)):
            for k, network in enumerate(networks):
                inputs[k], masks[k] = network[i](inputs[k], masks[k])
            if self.laterals is not None and i < len(self.laterals):
                inputs[0], inputs[1] = self.laterals[i](inputs[0], inputs[1], masks[0], masks[1])
        pooled = [(x.mean((3, 4)) * m[:, None]).sum(2) / m.sum(1, keepdim=True).clamp(min=1)
                  for x, m in zip(inputs, masks)]
        return torch.cat(pooled[::-1], dim=1)
