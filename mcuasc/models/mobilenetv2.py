"""MobileNetV2 with coordinate attention, the seed's Tables 2–4, for (B, 3, 128, 36) log-mel + Δ + ΔΔ input.

Parameter convention of Table 2 (Keras): convolution weights and biases, batch-norm with all four vectors
(γ, β, moving mean, moving variance). Three of its batch-norm rows have 2 values a channel: batch-norms
without the affine γ/β (moving statistics only), which is how they are built here. Total: 110,452.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mcuasc.models.layers import AxisAverage


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=True),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class Bottleneck(nn.Module):
    """Tables 3 and 4: 1×1 expansion to 2·C_in, 3×3 depthwise (stride 1 or 2), 1×1 projection; residual when
    the shape is kept (bottleneck-res)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        hidden = 2 * in_channels
        self.expand = conv_bn_relu(in_channels, hidden, 1)
        self.depthwise = conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=True)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project_bn(self.project(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al. 2021), reduction r: attention maps along frequency and along time."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = max(8, channels // reduction)
        self.squeeze = nn.Conv2d(channels, mid, 1, bias=True)
        self.bn = nn.BatchNorm2d(mid)
        self.activation = nn.ReLU()
        self.attend_frequency = nn.Conv2d(mid, channels, 1, bias=True)
        self.attend_time = nn.Conv2d(mid, channels, 1, bias=True)
        self.time_average = AxisAverage("time")
        self.frequency_average = AxisAverage("frequency")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, f, t = x.shape
        along_frequency = self.time_average(x)  # (B, C, F, 1)
        along_time = self.frequency_average(x).transpose(2, 3)  # (B, C, T, 1)
        y = self.activation(self.bn(self.squeeze(torch.cat([along_frequency, along_time], dim=2))))
        y_frequency, y_time = torch.split(y, [f, t], dim=2)
        a_frequency = torch.sigmoid(self.attend_frequency(y_frequency))
        a_time = torch.sigmoid(self.attend_time(y_time)).transpose(2, 3)
        return x * a_frequency * a_time


class MobileNetV2CA(nn.Module):
    def __init__(self, n_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        self.stem = conv_bn_relu(3, 32, 3, stride=2)
        specs = [(32, 32, 2), (32, 32, 1), (32, 32, 1), (32, 48, 2), (48, 48, 1), (48, 48, 1),
                 (48, 64, 2), (64, 64, 1), (64, 64, 1)]
        self.blocks = nn.Sequential(*(Bottleneck(i, o, s) for i, o, s in specs))
        self.conv_1x1 = conv_bn_relu(64, 64, 1)
        self.norm = nn.BatchNorm2d(64, affine=False)
        self.conv_1x1_b = nn.Conv2d(64, 64, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention = CoordinateAttention(64, reduction=4)
        self.attention_norm = nn.BatchNorm2d(64, affine=False)
        self.classifier = nn.Conv2d(64, n_classes, 1, bias=False)
        self.classifier_norm = nn.BatchNorm2d(n_classes, affine=False)
        self.pool = AxisAverage("global")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_1x1(self.blocks(self.stem(x)))
        x = self.dropout(self.conv_1x1_b(F.relu(self.norm(x))))
        x = self.attention_norm(self.attention(x))
        return self.pool(self.classifier_norm(self.classifier(x)))

    def table_rows(self) -> list[tuple[str, nn.Module]]:
        """Table 2's rows, in order (BN + ReLU rows split out as the table does)."""
        rows: list[tuple[str, nn.Module]] = [("conv 3×3 s2", self.stem[0]), ("BN + ReLU", self.stem[1])]
        names = ["bottleneck 32 s2", "bottleneck-res 32", "bottleneck-res 32", "bottleneck 48 s2", "bottleneck-res 48",
                 "bottleneck-res 48", "bottleneck 64 s2", "bottleneck-res 64", "bottleneck-res 64"]
        rows += list(zip(names, self.blocks))
        rows += [("conv 1×1 64", self.conv_1x1[0]), ("BN + ReLU", self.conv_1x1[1]), ("BN + ReLU", self.norm),
                 ("conv 1×1 64", self.conv_1x1_b), ("dropout", self.dropout), ("coordinate attention", self.attention),
                 ("BN", self.attention_norm), ("conv 1×1 10", self.classifier), ("BN", self.classifier_norm),
                 ("GAP", self.pool)]
        return rows


def mobilenetv2_ca(n_classes: int = 10, **kwargs) -> MobileNetV2CA:
    return MobileNetV2CA(n_classes=n_classes, **kwargs)
