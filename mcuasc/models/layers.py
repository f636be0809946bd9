"""Building blocks shared by the zoo, written in forms that convert to TFLM-friendly int8 graphs:
averages are avg_pool2d (TFLite AVERAGE_POOL_2D, which CMSIS-NN accelerates) rather than torch.mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubSpectralNorm(nn.Module):
    """BatchNorm per (channel, frequency sub-band) (Chang et al. 2021): C·S batch-norm channels, 2·C·S params."""

    def __init__(self, channels: int, sub_bands: int = 4):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(f"SubSpectralNorm needs the frequency axis ({f}) divisible by {self.sub_bands}")
        return self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)


class ResidualNorm(nn.Module):
    """Residual Normalization (Kim et al., DCASE2021): λ·x + InstanceNorm over frequency.

    Each frequency bin is normalised by its mean and variance over channels and time, which removes a
    device's per-frequency gain (an offset in dB); λ keeps some of the raw signal. No parameters.
    """

    def __init__(self, lam: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.lam = lam
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 3), keepdim=True)
        return self.lam * x + (x - mean) * torch.rsqrt(var + self.eps)


class AxisAverage(nn.Module):
    """Mean over frequency ("frequency": (B, C, F, T) → (B, C, 1, T)), time ("time": → (B, C, F, 1)) or both
    ("global": → (B, C)), as an average pool: a module, so the MAC counter sees it as the pooling it is."""

    def __init__(self, axis: str):
        super().__init__()
        if axis not in ("frequency", "time", "global"):
            raise ValueError(f"unknown axis {axis!r}")
        self.axis = axis

    def kernel(self, x: torch.Tensor) -> tuple[int, int]:
        # Plain ints: the ONNX trace must see a constant kernel, never a Shape/Gather computation.
        f, t = (int(v) for v in x.shape[2:])
        return {"frequency": (f, 1), "time": (1, t), "global": (f, t)}[self.axis]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(x, kernel_size=self.kernel(x))
        return y.flatten(1) if self.axis == "global" else y
