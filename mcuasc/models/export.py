"""Inference-time forms of the zoo's models, what the converter (stage 2) exports.

- Batch-norm after a convolution is folded into it (weights and bias).
- SubSpectralNorm becomes a fixed per-(channel, frequency) affine: no reshape into sub-bands in the graph.
- Means are already average pools in the training models (AVERAGE_POOL_2D, which CMSIS-NN accelerates).
The result computes the same function as the model in eval mode (tested to float tolerance).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mcuasc.models.layers import SubSpectralNorm


class BandAffine(nn.Module):
    """x·scale + bias with per-(channel, frequency) constants: SubSpectralNorm at inference."""

    def __init__(self, ssn: SubSpectralNorm, frequencies: int):
        super().__init__()
        bn = ssn.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        channels = bn.num_features // ssn.sub_bands
        per_band = frequencies // ssn.sub_bands
        # BN channel c·S + s covers channel c, frequencies [s·per_band, (s+1)·per_band).
        expand = lambda v: v.view(channels, ssn.sub_bands, 1).expand(channels, ssn.sub_bands, per_band).reshape(1, channels, frequencies, 1)
        self.register_buffer("scale", expand(scale.detach()).clone())
        self.register_buffer("bias", expand(bias.detach()).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.bias


def _ssn_frequencies(model: nn.Module, input_shape: tuple[int, ...]) -> dict[nn.Module, int]:
    sizes: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.__setitem__(mod, inp[0].shape[2]))
             for m in model.modules() if isinstance(m, SubSpectralNorm)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return sizes


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
    """An equivalent module for export: eval mode, BN folded, SubSpectralNorm as a per-band affine."""
    model = copy.deepcopy(model).eval()
    frequencies = _ssn_frequencies(model, input_shape)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, SubSpectralNorm):
                setattr(module, name, BandAffine(child, frequencies[child]))
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
    return model
