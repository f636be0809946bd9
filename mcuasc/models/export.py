"""Inference-time forms of the zoo's models, what the converter (stage 2) exports.

- Batch-norm after a convolution is folded into it (weights and bias); a batch-norm with nothing to fold into
  becomes a 1×1 depthwise convolution (a CMSIS-NN fast path, unlike a broadcasting MUL + ADD).
- SubSpectralNorm becomes a split into sub-bands, a 1×1 depthwise convolution per band, and a concat: no
  broadcasting MUL/ADD by a (channel, frequency) constant, which TFLM runs with reference code and onnx2tf
  1.29 mis-transposes.
- Residual Normalization's means are average pools (over time) and a 1×1 convolution (over channels) rather
  than ReduceMean (TFLite MEAN, which has no CMSIS-NN kernel).
- Coordinate attention runs its shared squeeze convolution on the two pooled maps separately: no concat,
  split or transpose in the graph.
The result computes the same function as the model in eval mode (tested to float tolerance).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mcuasc.models.layers import ResidualNorm, SubSpectralNorm
from mcuasc.models.mobilenetv2 import CoordinateAttention


class SubBandAffine(nn.Module):
    """SubSpectralNorm at inference: split along frequency into the sub-bands, a 1×1 depthwise conv (the
    band's per-channel affine) on each, concatenate. In TFLite: SPLIT, DEPTHWISE_CONV_2D per band,
    CONCATENATION — CMSIS-NN kernels and memory copies, where a broadcasting MUL/ADD by a (channel, frequency)
    constant would run TFLM's reference code (and is mis-transposed by onnx2tf 1.29, as is Slice along
    frequency; Split converts correctly)."""

    def __init__(self, ssn: SubSpectralNorm, frequencies: int):
        super().__init__()
        bn = _affine(ssn.bn)
        channels, bands = bn.num_features // ssn.sub_bands, ssn.sub_bands
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        shift = (bn.bias - bn.running_mean * scale).detach()
        # BN channel c·S + s is channel c in sub-band s.
        scale, shift = scale.view(channels, bands), shift.view(channels, bands)
        self.band_height = frequencies // bands
        self.band_affines = nn.ModuleList()
        for band in range(bands):
            affine = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
            affine.weight = nn.Parameter(scale[:, band].reshape(channels, 1, 1, 1).clone())
            affine.bias = nn.Parameter(shift[:, band].clone())
            self.band_affines.append(affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = torch.split(x, self.band_height, dim=2)
        return torch.cat([affine(band) for affine, band in zip(self.band_affines, bands)], dim=2)


class ResidualNormExport(nn.Module):
    """ResidualNorm with its means over channels and time as an average pool over time followed by a 1×1
    convolution of weight 1/C (omitted when C = 1), never ReduceMean (TFLite MEAN, no CMSIS-NN kernel).

    The variance stays E[(x − mean)²]: the shorter E[x²] − mean² cancels catastrophically in int8 (features
    in dB sit far from zero; measured SQNR ≈ 10 dB at the variance against ≈ 40 dB this way)."""

    def __init__(self, norm: ResidualNorm, channels: int, frames: int):
        super().__init__()
        self.lam, self.eps, self.frames = norm.lam, norm.eps, frames
        self.channel_mean: nn.Module = nn.Identity()
        if channels > 1:
            self.channel_mean = nn.Conv2d(channels, 1, 1, bias=False)
            nn.init.constant_(self.channel_mean.weight, 1.0 / channels)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mean(F.avg_pool2d(x, (1, self.frames)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean(x)
        variance = self.mean(centred * centred)
        return centred * torch.rsqrt(variance + self.eps) + self.lam * x


class CoordinateAttentionExport(nn.Module):
    """Coordinate attention with the shared (BN-folded) squeeze conv applied to each pooled map on its own:
    a 1×1 conv is pointwise, so this equals squeezing their concatenation, without concat/split/transpose."""

    def __init__(self, attention: CoordinateAttention):
        super().__init__()
        self.squeeze, self.activation = attention.squeeze, attention.activation
        self.attend_frequency, self.attend_time = attention.attend_frequency, attention.attend_time
        self.time_average, self.frequency_average = attention.time_average, attention.frequency_average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        along_frequency = self.activation(self.squeeze(self.time_average(x)))  # (B, mid, F, 1)
        along_time = self.activation(self.squeeze(self.frequency_average(x)))  # (B, mid, 1, T)
        return x * torch.sigmoid(self.attend_frequency(along_frequency)) * torch.sigmoid(self.attend_time(along_time))


def batchnorm_as_depthwise(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A lone batch-norm as the per-channel affine it is at inference: a 1×1 depthwise conv with bias."""
    bn = _affine(bn)
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    conv = nn.Conv2d(bn.num_features, bn.num_features, 1, groups=bn.num_features, bias=True)
    conv.weight = nn.Parameter(scale.view(-1, 1, 1, 1).clone())
    conv.bias = nn.Parameter((bn.bias - bn.running_mean * scale).detach().clone())
    return conv


def _input_shapes(model: nn.Module, input_shape: tuple[int, ...], kinds: tuple[type, ...]) -> dict[nn.Module, torch.Size]:
    shapes: dict[nn.Module, torch.Size] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.__setitem__(mod, inp[0].shape))
             for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return shapes


def _fuse_sequential_pairs(module: nn.Module) -> None:
    """Fold BN into the conv before it wherever they sit side by side in a Sequential or as named attributes."""
    for child in module.children():
        _fuse_sequential_pairs(child)
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (name_a, a), (name_b, b) in zip(items, items[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                module._modules[name_a] = fuse_conv_bn_eval(a, _affine(b))
                module._modules[name_b] = nn.Identity()


def _affine(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """A non-affine batch-norm as an affine one with γ = 1, β = 0 (fuse_conv_bn_eval wants γ and β)."""
    if bn.affine:
        return bn
    twin = nn.BatchNorm2d(bn.num_features, eps=bn.eps).eval()
    twin.running_mean.copy_(bn.running_mean)
    twin.running_var.copy_(bn.running_var)
    return twin


# (conv attribute, batch-norm attribute) pairs that the zoo's modules hold side by side.
_NAMED_PAIRS = (("expand", "expand_bn"), ("temporal_conv", "temporal_bn"), ("project", "project_bn"),
                ("classifier", "classifier_norm"), ("squeeze", "bn"))
# (batch-norm attribute, 1×1 conv attribute) pairs where the batch-norm feeds the conv directly.
_NAMED_FORWARD_PAIRS = (("attention_norm", "classifier"),)


def fold_bn_into_next_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """conv(a·x + b) = (W·a)·x + (W·b + bias) for a 1×1 convolution after a batch-norm."""
    bn = _affine(bn)
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bn.bias - bn.running_mean * a
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach()
    fused.weight = nn.Parameter(weight * a.view(1, -1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    fused.bias = nn.Parameter(bias + (weight.flatten(1) @ b))
    return fused


def export_form(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """An equivalent module for export (see the module docstring for each rewrite)."""
    model = copy.deepcopy(model).eval()
    shapes = _input_shapes(model, input_shape, (SubSpectralNorm, ResidualNorm))
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, SubSpectralNorm):
                setattr(module, name, SubBandAffine(child, shapes[child][2]))
            elif isinstance(child, ResidualNorm):
                _, channels, _, frames = shapes[child]
                setattr(module, name, ResidualNormExport(child, channels, frames))
        # A batch-norm feeding a 1×1 conv first, then the batch-norms after convs (order matters when a conv
        # has both, as the MobileNetV2 classifier does).
        for bn_name, conv_name in _NAMED_FORWARD_PAIRS:
            bn, conv = getattr(module, bn_name, None), getattr(module, conv_name, None)
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1):
                setattr(module, conv_name, fold_bn_into_next_conv(bn, conv))
                setattr(module, bn_name, nn.Identity())
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, _affine(bn)))
                setattr(module, bn_name, nn.Identity())
    _fuse_sequential_pairs(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, CoordinateAttention):
                setattr(module, name, CoordinateAttentionExport(child))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(module, name, batchnorm_as_depthwise(child))
    return model
