"""Parameters and multiply-accumulates, counted the way the papers and the DCASE challenge count them.

Parameters, two conventions:
- ``trainable``: torch's trainable parameters (batch-norm as γ, β). The seed's Tables 1, 5–7.
- ``keras``: trainable parameters plus batch-norm moving mean and variance, as Keras summaries count.
  The seed's Table 2 and the DCASE baseline's 46,246.

MACs, as the challenge's NeSsi tool counts on the TFLite model (it reproduces the baseline's table exactly):
convolutions output elements × kernel area × input channels per group (no bias); pooling output elements
× the window it actually covers; fully connected the last dimension of its input as the TFLite graph holds it
× units (NeSsi sees the baseline's dense-1 input as 1 × 2 × 1 × 32, not the flattened 64, hence 3,200);
batch-norm, activations and element-wise adds and multiplies cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcuasc.models.layers import AxisAverage


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def keras_parameters(module: nn.Module) -> int:
    stats = sum(b.numel() for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable_parameters(module) + stats


@dataclass(frozen=True)
class LayerCost:
    name: str
    params: int
    macs: int


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[nn.Module, int]:
    """MACs of one inference, per leaf module, by running a batch of one through forward hooks."""
    macs: dict[nn.Module, int] = {}
    flatten_input: dict[str, torch.Size] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            cost = output.numel() * kh * kw * module.in_channels // module.groups
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, AxisAverage)):
            if isinstance(module, AxisAverage):
                kh, kw = module.kernel(x)
            else:
                k = module.kernel_size
                kh, kw = (k, k) if isinstance(k, int) else k
            cost = output.numel() * min(kh, x.shape[2]) * min(kw, x.shape[3])
        elif isinstance(module, nn.Flatten):
            flatten_input["shape"] = x.shape
            cost = 0
        elif isinstance(module, nn.Linear):
            shape = flatten_input.pop("shape", None)
            last_dim = shape[1] if shape is not None and len(shape) == 4 else module.in_features  # NHWC's C
            cost = last_dim * module.out_features
        else:
            cost = 0
        macs[module] = macs.get(module, 0) + cost // x.shape[0]

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return macs


def layer_costs(model: nn.Module, input_shape: tuple[int, ...], rows: list[tuple[str, nn.Module]],
                convention: str) -> list[LayerCost]:
    """Params and MACs for each named row (a module and everything under it)."""
    count = keras_parameters if convention == "keras" else trainable_parameters
    macs = count_macs(model, input_shape)
    return [LayerCost(name, count(module), sum(macs.get(m, 0) for m in module.modules())) for name, module in rows]
