"""int8 simulated in float while training (quantization-aware fine-tuning, stage 1).

The converter quantizes every activation per tensor to int8 with the range it saw on its calibration clips
(simulated here as their min/max; convert narrows large tensors to the 99.999th percentile, which clips only their
rarest values, so the simulated grid is at most that much coarser), and rounds every weight per output channel. A model trained in float has never felt that rounding,
and where its decision hangs on small differences (BC-ResNet's frequency averages, whose int8 pool keeps its
input's coarse scale; the broadcast residual's sums) int8 flips it. Here each activation the converter will
quantize is rounded the same way during fine-tuning, with straight-through gradients, so the network learns
weights whose decisions survive int8; the converter then runs unchanged on the result.

The quantization points follow the int8 graph's: the outputs of convolutions not followed by a batch-norm (nor
by a SubSpectralNorm of one band, which is one), of batch-norms (folded into their convolutions there), of SubSpectralNorm and Residual Normalization, of
activations, pools and blocks (the residual sums). An average pool keeps its input's scale in int8 (TFLite's
AVERAGE_POOL_2D requantizes nothing), so its output is rounded on its input's grid, except BC-ResNet's frequency
average, which the converter computes as a convolution of the block's input (mcuasc.models.export): rounded on
its own range (the converter also evens out its channels, which this per-tensor rounding leaves coarser).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from mcuasc.models.bcresnet import BroadcastBranches
from mcuasc.models.layers import AxisAverage, ResidualNorm, SubSpectralNorm

# Leaf modules whose output is an int8 tensor in the converted graph (a conv followed by a batch-norm is not:
# the batch-norm's output is, see _quantized_modules).
_QUANTIZED_TYPES = (nn.BatchNorm2d, nn.ReLU, nn.SiLU, nn.Hardsigmoid, nn.Sigmoid, nn.MaxPool2d, SubSpectralNorm,
                    ResidualNorm, nn.Linear)
_POOLS = (AxisAverage, nn.AvgPool2d, nn.AdaptiveAvgPool2d)  # int8: the input's scale
_BLOCK_SUFFIXES = ("Block", "Bottleneck")  # BC-ResNet's blocks, MobileNetV2's bottlenecks: their residual sums


def _round_to_grid(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """x on the int8 grid of [low, high] (TFLite's asymmetric per-tensor scheme: 255 steps, zero exactly
    representable), with the straight-through gradient inside the range."""
    low, high = torch.minimum(low, torch.zeros_like(low)), torch.maximum(high, torch.zeros_like(high))
    scale = torch.clamp((high - low) / 255.0, min=1e-8)
    zero_point = torch.round(-low / scale) - 128.0
    q = torch.clamp(torch.round(x / scale) + zero_point, -128.0, 127.0)
    rounded = (q - zero_point) * scale
    inside = torch.clamp(x, (-128.0 - zero_point) * scale, (127.0 - zero_point) * scale)
    return inside + (rounded - inside).detach()


class Int8Simulation:
    """Forward hooks that round a model's activations to int8 as the converter will.

    Ranges are calibrated, as the converter calibrates them: `calibrate(batches)` runs the model in eval mode
    and records each point's min/max (of the input too, for pools that keep their input's scale). Until then
    and while `enabled` is False the hooks do nothing."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.enabled = False
        self._calibrating = False
        self.ranges: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        modules = dict(model.named_modules())
        self._handles = [module.register_forward_hook(self._hook(name, keep_input_scale=_keeps_input_scale(name, module, modules)))
                         for name, module in _quantized_modules(model)]

    def _hook(self, name: str, keep_input_scale: bool):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if not isinstance(output, torch.Tensor):
                return None
            observed = inputs[0] if keep_input_scale else output
            if self._calibrating:
                low, high = observed.detach().amin(), observed.detach().amax()
                if name in self.ranges:
                    low, high = torch.minimum(low, self.ranges[name][0]), torch.maximum(high, self.ranges[name][1])
                self.ranges[name] = (low, high)
                return None
            if not self.enabled or name not in self.ranges:
                return None
            low, high = self.ranges[name]
            return _round_to_grid(output, low, high)
        return hook

    @torch.no_grad()
    def calibrate(self, batches: Iterator[torch.Tensor]) -> None:
        was_training = self.model.training
        self.model.eval()
        self.ranges.clear()
        self._calibrating = True
        try:
            for x in batches:
                self.model(x)
        finally:
            self._calibrating = False
            self.model.train(was_training)

    @contextmanager
    def active(self):
        previous, self.enabled = self.enabled, True
        try:
            yield self
        finally:
            self.enabled = previous

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _keeps_input_scale(name: str, module: nn.Module, modules: dict[str, nn.Module]) -> bool:
    """An int8 average pool keeps its input's scale; BC-ResNet's frequency average is no pool in the int8 graph."""
    parent = modules.get(name.rpartition(".")[0])
    return isinstance(module, _POOLS) and not (isinstance(parent, BroadcastBranches) and module is parent.frequency_average)


def _quantized_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs the int8 graph holds as int8 tensors, in model order."""
    named = list(model.named_modules())
    modules = dict(named)
    chosen = []
    for i, (name, module) in enumerate(named):
        if not name:
            continue
        if isinstance(module, nn.Conv2d):
            # A conv's output is a tensor of its own unless a batch-norm (folded into it) comes next, or a
            # SubSpectralNorm of one band (a batch-norm, folded too).
            following = named[i + 1][1] if i + 1 < len(named) else None
            folded = isinstance(following, SubSpectralNorm) and following.sub_bands == 1
            if not (isinstance(following, nn.BatchNorm2d) or folded):
                chosen.append((name, module))
        elif isinstance(module, _POOLS + _QUANTIZED_TYPES):
            parent = modules.get(name.rpartition(".")[0])
            if isinstance(module, nn.BatchNorm2d) and isinstance(parent, SubSpectralNorm):
                continue  # SubSpectralNorm's own batch-norm: the SubSpectralNorm output is the point
            chosen.append((name, module))
        elif type(module).__name__.endswith(_BLOCK_SUFFIXES):
            chosen.append((name, module))
    return chosen
