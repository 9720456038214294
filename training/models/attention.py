"""CBAM (Woo et al. 2018): channel then spatial attention on a feature map, and a wrapper that puts
one block between a timm backbone's last feature map and its pooling/head."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Scale each channel by sigmoid(MLP(avgpool) + MLP(maxpool)), the MLP shared, reduced by `reduction`."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """Scale each position by sigmoid(conv7x7([mean over channels, max over channels]))."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class WithAttention(nn.Module):
    """A timm classifier with a block on its last feature map: forward_features -> block -> forward_head."""

    def __init__(self, backbone: nn.Module, block: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.block(self.backbone.forward_features(x)))


ATTENTION = {"cbam": CBAM}  # model.attention -> block builder(channels)
