"""Inference-time forms of the zoo's models, what the converter (stage 2) exports.

- Batch-norm after a convolution is folded into it (weights and bias); a batch-norm with nothing to fold into
  becomes a 1×1 depthwise convolution (a CMSIS-NN fast path, unlike a broadcasting MUL + ADD).
- SubSpectralNorm becomes a per-(channel, frequency) affine, one MUL and one ADD by constants (the converter
  works around onnx2tf 1.29 mis-transposing such constants, see mcuasc.convert.tf_worker); with one band it is
  a batch-norm, folded into the frequency conv, and a normal block's identity then joins that conv as well
  (NormalBlockExport: centre tap + 1).
- Means that int8 would otherwise take from an average pool are convolutions whose kernel spans the averaged
  axes (Residual Normalization's means over channels and time):
  an int8 pool keeps its input's scale, and a mean's range is much narrower than its input's (the mean of x²
  by far), so it would get a few of the 256 steps; a convolution accumulates in int32 and requantizes to its
  own calibrated range. Never ReduceMean (TFLite MEAN, which has no CMSIS-NN kernel). BC-ResNet's head (1×1 conv,
  then global average) averages first, so the logits get the conv's own range.
- BC-ResNet's frequency average, the temporal branch's input, is one depthwise (F, 1) convolution of the block's
  input (BroadcastBranchesExport), not a pool of the frequency branch; with calibration data its channels are
  scaled to fill its int8 range, undone in the temporal conv (equalize_frequency_averages).
- With calibration data, each convolution's bias is corrected for the mean shift that rounding its weights to int8
  (per output channel, as the converter does) causes on those clips (correct_weight_rounding_bias): the only
  rewrite that changes the function, by what the weights' rounding changes it, in the other direction.
- Coordinate attention runs its shared squeeze convolution on the two pooled maps separately: no concat,
  split or transpose in the graph.
- BC-ResNet's stem, the first transition block's Residual Normalization and its 1×1 expand conv (+ BN) become
  one conv straight from the input plus the norm's statistics computed from the input too (StemNormExpand):
  the stem's wide output (2c channels at full resolution, the model's largest tensor) is never formed.
  Without that norm (the nRF52840 recipe) the stem and the expand conv (+ BN) are simply one conv.
The result computes the same function as the model in eval mode (tested to float tolerance), but for the bias
correction.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mcuasc.models.bcresnet import BroadcastBranches, NormalBlock
from mcuasc.models.layers import AxisAverage, ResidualNorm, SubSpectralNorm
from mcuasc.models.mobilenetv2 import CoordinateAttention


class BandAffine(nn.Module):
    """SubSpectralNorm at inference: x·ratio + bias with per-(channel, frequency) constants, piecewise constant
    over the sub-bands. Two broadcasting ops (MUL, ADD) and no reshape into sub-bands in the graph.

    int8 quantizes a MUL's constant per tensor, so the per-channel part of the scale, max over bands of
    |γ/σ|, is folded into the preceding depthwise conv (quantized per channel) when there is one; what is
    left, the ratio between bands, lies in [−1, 1] and survives per-tensor quantization."""

    def __init__(self, ssn: SubSpectralNorm, frequencies: int, conv: nn.Conv2d | None = None):
        super().__init__()
        channels, bands = ssn.bn.num_features // ssn.sub_bands, ssn.sub_bands
        scale, shift = bn_scale_shift(ssn.bn)
        # BN channel c·S + s covers channel c, frequencies [s·F/S, (s+1)·F/S).
        scale, shift = scale.view(channels, bands), shift.view(channels, bands)
        if conv is not None:
            per_channel = scale.abs().amax(dim=1).clamp_min(1e-12)
            conv.weight.data.mul_(per_channel.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.data.mul_(per_channel)
            scale = scale / per_channel.view(-1, 1)
        expand = lambda v: v.view(channels, bands, 1).expand(channels, bands, frequencies // bands).reshape(1, channels, frequencies, 1)
        self.register_buffer("scale", expand(scale).clone())
        self.register_buffer("bias", expand(shift).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.bias


class ResidualNormExport(nn.Module):
    """ResidualNorm with its means over channels and time as one (1, T) convolution of weight 1/(C·T), never
    ReduceMean (TFLite MEAN, no CMSIS-NN kernel) nor an average pool (which would keep its input's int8 scale).

    Two arrangements, chosen for int8:
    - on the network input (C = 1, features in dB far from zero) the centred form E[(x − mean)²] and
      (x − mean)/σ + λx: E[x²] − mean² would cancel catastrophically there (SQNR ≈ 10 dB measured);
    - inside the network (C > 1, activations near zero mean, and the largest tensors of the model) the
      form with one full-size temporary: var = E[x²] − mean², out = x·(1/σ + λ) − mean/σ, where the
      per-frequency factors are tiny tensors. The centred form would keep x, x − mean and its square alive
      together, 1.5× the activation memory.
    """

    def __init__(self, norm: ResidualNorm, channels: int, frames: int):
        super().__init__()
        self.lam, self.eps, self.frames = norm.lam, norm.eps, frames
        self.centred = channels == 1
        self.mean = mean_conv(channels, frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean(x)
        if self.centred:
            centred = x - mean
            return centred * torch.rsqrt(self.mean(centred * centred) + self.eps) + self.lam * x
        variance = F.relu(self.mean(x * x) - mean * mean)  # ≥ 0 also after int8 rounding
        inverse_std = torch.rsqrt(variance + self.eps)
        return x * (inverse_std + self.lam) - mean * inverse_std


class StemNormExpand(nn.Module):
    """expand_bn(expand(ResidualNorm(stem(x)))) without ever forming stem(x), exactly.

    The stem is a conv with bias and no activation, so every stem channel is an affine function of the input
    patch p̃ = [p; 1]: x_c = a_c·p̃. With the norm's statistics per frequency over channels c and time t,
    mean m = E[x] and σ² = E[(x − m)²], the norm is x·(λ + 1/σ) − m/σ and the expand conv W after it gives
        W·RN(x) = (λ + 1/σ)·(W·x) − (m/σ)·(W·1),   W·x = (W·A)·p̃:
    one conv of the input to the block's (narrower) width. σ² splits into the spread over channels at each
    (f, t), E_c[(x_c − x̄)²] = Σ_k λ_k (u_k·p̃)² with (λ_k, u_k) the eigenpairs of the channel-centred Gram matrix
    of A (rank ≤ patch size + 1), and the spread of the channel mean x̄ = ā·p̃ over time. Both are sums of
    squares (no E[x²] − m² cancellation in int8), and the widest temporary is the K ≤ 26-channel projection
    instead of the 2c-channel stem output."""

    def __init__(self, stem: nn.Conv2d, norm: ResidualNorm, expand: nn.Conv2d, expand_bn: nn.BatchNorm2d, frames: int):
        super().__init__()
        self.lam, self.eps = norm.lam, norm.eps
        self.time_mean = mean_conv(1, frames)
        conv_args = dict(kernel_size=stem.kernel_size, stride=stem.stride, padding=stem.padding)
        in_channels = stem.in_channels
        weight = stem.weight.detach().double().flatten(1)
        bias = stem.bias.detach().double() if stem.bias is not None else torch.zeros(stem.out_channels, dtype=torch.float64)
        affine = torch.cat([weight, bias[:, None]], dim=1)  # (C, patch + 1): x_c = a_c·p̃
        mean_row = affine.mean(dim=0)
        centred = affine - mean_row
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / affine.shape[0])
        keep = eigenvalues > eigenvalues.max() * 1e-9  # the Gram matrix's rank: the rest are rounding
        eigenvalues, eigenvectors = eigenvalues[keep], eigenvectors[:, keep]

        def conv_from(rows: torch.Tensor) -> nn.Conv2d:
            conv = nn.Conv2d(in_channels, rows.shape[0], **conv_args, bias=True)
            conv.weight = nn.Parameter(rows[:, :-1].reshape(rows.shape[0], *stem.weight.shape[1:]).float())
            conv.bias = nn.Parameter(rows[:, -1].float().clone())
            return conv

        self.projection = conv_from(eigenvectors.T)  # u_k·p̃
        self.spread = nn.Conv2d(eigenvalues.numel(), 1, 1, bias=False)  # Σ_k λ_k (u_k·p̃)²
        self.spread.weight = nn.Parameter(eigenvalues.float().view(1, -1, 1, 1))
        self.channel_mean = conv_from(mean_row[None])  # x̄ = ā·p̃
        scale, shift = bn_scale_shift(expand_bn)
        expand_weight = expand.weight.detach().double().flatten(1)  # (out, C)
        if expand.bias is not None:
            raise ValueError("StemNormExpand expects the expand conv without bias (its BN carries the shift)")
        self.expanded = conv_from(scale.double()[:, None] * (expand_weight @ affine))  # γ'·W·x
        # −(m/σ)·γ'·(W·1) + β' as a 1×1 conv of the (1, 1, F, 1) map m/σ.
        self.mean_term = nn.Conv2d(1, expand.out_channels, 1, bias=True)
        self.mean_term.weight = nn.Parameter((-scale.double() * expand_weight.sum(dim=1)).float().view(-1, 1, 1, 1))
        self.mean_term.bias = nn.Parameter(shift.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projection(x)
        channel_mean = self.channel_mean(x)
        mean = self.time_mean(channel_mean)
        drift = channel_mean - mean
        variance = self.time_mean(self.spread(projected * projected) + drift * drift)
        inverse_std = torch.rsqrt(variance + self.eps)
        return self.expanded(x) * (inverse_std + self.lam) + self.mean_term(mean * inverse_std)


def _stem_and_first_transition(model: nn.Module) -> tuple[nn.Module | None, nn.Module | None]:
    """BC-ResNet's stem and its first block when that is a transition block (else None for it)."""
    from mcuasc.models.bcresnet import TransitionBlock

    blocks = getattr(model, "blocks", None)
    first = next(iter(blocks.children()), None) if isinstance(blocks, nn.Sequential) else None
    return getattr(model, "stem", None), first if isinstance(first, TransitionBlock) else None


def _fuse_stem_into_first_block(model: nn.Module, shapes: dict[nn.Module, torch.Size]) -> None:
    """BC-ResNet: stem → first transition block's norm and expand conv as one StemNormExpand, when the stem
    is a plain conv (no activation) feeding that block directly."""
    stem, first = _stem_and_first_transition(model)
    if not (isinstance(stem, nn.Conv2d) and first is not None and isinstance(first.residual_norm, ResidualNorm)
            and isinstance(first.expand_bn, nn.BatchNorm2d) and stem.groups == 1):
        return
    frames = shapes[first.residual_norm][3]
    model.stem = StemNormExpand(stem, first.residual_norm, first.expand, first.expand_bn, frames)
    first.residual_norm, first.expand, first.expand_bn = nn.Identity(), nn.Identity(), nn.Identity()


def _merge_stem_into_expand(model: nn.Module) -> None:
    """BC-ResNet without a norm in its first transition block (the nRF52840 recipe): the stem conv and the 1×1
    expand conv after it are two linear maps in a row, so one conv from the input computes both, exactly,
    W_e·(W_s·p + b_s) + b_e. The stem's 2c-channel output is never formed, and the pair's MACs fall to under a third."""
    stem, first = _stem_and_first_transition(model)
    if not (isinstance(stem, nn.Conv2d) and stem.groups == 1 and first is not None
            and isinstance(first.residual_norm, nn.Identity) and isinstance(first.expand_bn, nn.Identity)
            and isinstance(first.expand, nn.Conv2d) and first.expand.kernel_size == (1, 1)):
        return
    expand = first.expand.weight.detach().double().flatten(1)  # (out, 2c), the expand's BN already folded in
    merged = nn.Conv2d(stem.in_channels, expand.shape[0], stem.kernel_size, stride=stem.stride, padding=stem.padding, bias=True)
    weight = expand @ stem.weight.detach().double().flatten(1)
    merged.weight = nn.Parameter(weight.view(expand.shape[0], *stem.weight.shape[1:]).float())

    def bias(conv: nn.Conv2d) -> torch.Tensor:
        return conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)

    merged.bias = nn.Parameter((expand @ bias(stem) + bias(first.expand)).float())
    model.stem, first.expand = merged, nn.Identity()


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


class BroadcastBranchesExport(nn.Module):
    """BC-ResNet's broadcast branches with the temporal path's input taken from the block's input x.

    The frequency average of f2 = SubSpectralNorm(frequency_conv(x)) is linear in x: one depthwise (F, 1)
    convolution of x, with its bias, computes it exactly. In int8 the average of f2 was the sum of f2's
    roundings (the frequency conv's output, SubSpectralNorm's MUL and ADD) over F bins against a small mean
    (SubSpectralNorm centres every band), kept on f2's coarse grid by the pool; the convolution accumulates x
    in int32 and requantizes once, to its own range."""

    def __init__(self, branches: nn.Module, frequencies: int):
        super().__init__()
        self.frequency_conv, self.ssn = branches.frequency_conv, branches.ssn
        self.temporal_conv, self.activation, self.pointwise = branches.temporal_conv, branches.activation, branches.pointwise
        self.frequency_average = _frequency_average_as_depthwise(nn.Sequential(self.frequency_conv, self.ssn), frequencies)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        average = self.frequency_average(x)  # first: in a transition block x can die once f2 is formed
        f2 = self.ssn(self.frequency_conv(x))
        return f2, self.pointwise(self.activation(self.temporal_conv(average)))


class NormalBlockExport(nn.Module):
    """BC-ResNet's normal block, relu(x + f2 + f1), where f2 is its depthwise frequency conv alone (SubSpectralNorm
    with one band, a batch-norm, folded into it): x + f2 is that conv with 1 added to its centre tap. One ADD, and
    its int8 rounding, fewer on the block's main path, and x dies once the conv has read it. (With sub-bands,
    f2 ends in SubSpectralNorm's per-band MUL and ADD, which the identity cannot pass through.)"""

    def __init__(self, block: nn.Module):
        super().__init__()
        branches, conv = block.branches, block.branches.frequency_conv
        if not (isinstance(branches, BroadcastBranchesExport) and isinstance(branches.ssn, nn.Identity)
                and conv.groups == conv.out_channels and conv.kernel_size[1] == 1 and conv.kernel_size[0] % 2 == 1):
            raise ValueError("NormalBlockExport needs a depthwise (k, 1) frequency conv with SubSpectralNorm folded in")
        conv.weight.data[:, 0, conv.kernel_size[0] // 2, 0] += 1.0
        self.branches, self.activation = branches, block.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with_identity, temporal = self.branches(x)
        return self.activation(with_identity + temporal)


def _frequency_average_as_depthwise(per_channel_affine: nn.Module, frequencies: int) -> nn.Conv2d:
    """The depthwise (F, 1) convolution with bias equal to the frequency average of `per_channel_affine`, an
    affine map of (B, C, F, T) maps acting on each channel alone, read off its response (in float64) to zero
    and to each unit frequency."""
    twin = copy.deepcopy(per_channel_affine).double()
    channels = next(m for m in twin.modules() if isinstance(m, nn.Conv2d)).in_channels
    probes = torch.zeros(frequencies + 1, channels, frequencies, 1, dtype=torch.float64)
    probes[torch.arange(1, frequencies + 1), :, torch.arange(frequencies), 0] = 1.0
    with torch.no_grad():
        responses = F.avg_pool2d(twin(probes), (frequencies, 1)).view(frequencies + 1, channels)
    conv = nn.Conv2d(channels, channels, (frequencies, 1), groups=channels, bias=True)
    conv.weight = nn.Parameter((responses[1:] - responses[0]).T.reshape(channels, 1, frequencies, 1).float())
    conv.bias = nn.Parameter(responses[0].float().clone())
    return conv


def _run_with_hooks(model: nn.Module, calibration: torch.Tensor, hooks: list) -> None:
    """Run the calibration clips through model (batches of 32, no gradients) for the hooks to see, then remove
    them."""
    try:
        with torch.no_grad():
            for batch in calibration.split(32):
                model(batch)
    finally:
        for h in hooks:
            h.remove()


def equalize_frequency_averages(model: nn.Module, calibration: torch.Tensor) -> None:
    """Scale each channel of every BroadcastBranchesExport's frequency average by s_c ≥ 1 and its temporal
    depthwise conv's weights by 1/s_c: the same function (both are per channel, and the conv's zero padding
    scales too), but int8 quantizes the average per tensor, and its channels span a fraction of the tensor's
    calibrated range (the median a quarter, some a fiftieth). s_c is the largest factor that keeps the channel
    inside that range, so the range, and the step, stay as they were for the widest channel.

    calibration: the graph's input on the calibration clips, NCHW."""
    branches = [m for m in model.modules() if isinstance(m, BroadcastBranchesExport)]
    if not branches:
        return
    seen: dict[nn.Module, list[torch.Tensor]] = {b: [] for b in branches}
    _run_with_hooks(model, calibration, [b.frequency_average.register_forward_hook(
        lambda mod, inp, out, b=b: seen[b].append(out.detach())) for b in branches])
    for b in branches:
        average = torch.cat(seen[b])
        high, low = average.amax(dim=(0, 2, 3)), average.amin(dim=(0, 2, 3))
        top, bottom = float(high.max().clamp_min(0)), float(low.min().clamp_max(0))
        tiny = 1e-6 * max(top, -bottom, 1e-30)
        up = torch.where(high > tiny, top / high.clamp_min(tiny), torch.full_like(high, float("inf")))
        down = torch.where(low < -tiny, bottom / low.clamp_max(-tiny), torch.full_like(low, float("inf")))
        factor = torch.minimum(up, down)
        factor = torch.where(torch.isfinite(factor), factor, torch.ones_like(factor)).clamp_min(1.0)
        b.frequency_average.weight.data.mul_(factor.view(-1, 1, 1, 1))
        b.frequency_average.bias.data.mul_(factor)
        b.temporal_conv.weight.data.div_(factor.view(-1, 1, 1, 1))


def mean_conv(channels: int, frames: int) -> nn.Conv2d:
    """The mean over channels and time of a (B, C, F, T) map, (B, 1, F, 1), as one convolution."""
    conv = nn.Conv2d(channels, 1, (1, frames), bias=False)
    nn.init.constant_(conv.weight, 1.0 / (channels * frames))
    return conv


class PooledHead(nn.Module):
    """BC-ResNet's head, a 1×1 conv then a global average, as the average then the conv (they commute): the
    logits get the conv's own int8 range, where the pool after the conv kept the per-position range."""

    def __init__(self, conv: nn.Conv2d, frequencies: int, frames: int):
        super().__init__()
        self.kernel, self.conv = (frequencies, frames), conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(x, self.kernel)).flatten(1)


def _pool_before_head(model: nn.Module, shapes: dict[nn.Module, torch.Size]) -> None:
    head, pool = getattr(model, "head", None), getattr(model, "pool", None)
    if isinstance(head, nn.Conv2d) and isinstance(pool, AxisAverage) and pool.axis == "global" and head.kernel_size == (1, 1):
        _, _, f, t = shapes[pool]
        model.head, model.pool = nn.Identity(), PooledHead(head, int(f), int(t))


def batchnorm_as_depthwise(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A lone batch-norm as the per-channel affine it is at inference: a 1×1 depthwise conv with bias."""
    scale, shift = bn_scale_shift(bn)
    conv = nn.Conv2d(bn.num_features, bn.num_features, 1, groups=bn.num_features, bias=True)
    conv.weight = nn.Parameter(scale.view(-1, 1, 1, 1).clone())
    conv.bias = nn.Parameter(shift.clone())
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


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-norm at inference as y = scale·x + shift, per channel (detached)."""
    bn = _affine(bn)
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    return scale, (bn.bias - bn.running_mean * scale).detach()


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
    a, b = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach()
    fused.weight = nn.Parameter(weight * a.view(1, -1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    fused.bias = nn.Parameter(bias + (weight.flatten(1) @ b))
    return fused


def input_residual_norm(model: nn.Module) -> ResidualNorm | None:
    """The model's Residual Normalization on its input, if any (BC-ResNet's `input_norm`)."""
    norm = getattr(model, "input_norm", None)
    return norm if isinstance(norm, ResidualNorm) else None


def export_form(model: nn.Module, input_shape: tuple[int, ...], *, without_input_norm: bool = False,
                calibration: torch.Tensor | None = None, weight_bias_correction: bool = True) -> nn.Module:
    """An equivalent module for export (see the module docstring for each rewrite).

    without_input_norm: drop the input Residual Normalization, which the integer front end then computes
    (FrontendConfig.residual_norm): per-band statistics in int8 lose most of their precision.
    calibration (the graph's input on calibration clips, NCHW): even out the frequency averages' channels and,
    with weight_bias_correction, correct the biases for int8 weight rounding (the one rewrite that moves the
    function, by as much as the rounding moves it the other way)."""
    model = copy.deepcopy(model).eval()
    if without_input_norm and input_residual_norm(model) is not None:
        model.input_norm = nn.Identity()
    shapes = _input_shapes(model, input_shape, (SubSpectralNorm, ResidualNorm, AxisAverage))
    _fuse_stem_into_first_block(model, shapes)
    for module in list(model.modules()):
        # BC-ResNet's frequency depthwise conv feeds its SubSpectralNorm directly.
        conv, ssn = getattr(module, "frequency_conv", None), getattr(module, "ssn", None)
        if isinstance(conv, nn.Conv2d) and conv.groups == conv.out_channels and isinstance(ssn, SubSpectralNorm):
            if ssn.sub_bands == 1:  # a plain batch-norm: folded into the conv, no op left
                module.frequency_conv, module.ssn = fuse_conv_bn_eval(conv, _affine(ssn.bn)), nn.Identity()
            else:
                module.ssn = BandAffine(ssn, shapes[ssn][2], conv)
        for name, child in list(module.named_children()):
            if isinstance(child, SubSpectralNorm):
                setattr(module, name, BandAffine(child, shapes[child][2]))
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
    _merge_stem_into_expand(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BroadcastBranches):
                setattr(module, name, BroadcastBranchesExport(child, shapes[child.frequency_average][2]))
    # After the frequency averages, which take f2 without the identity.
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, NormalBlock) and isinstance(child.branches.ssn, nn.Identity):
                setattr(module, name, NormalBlockExport(child))
    _pool_before_head(model, shapes)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, CoordinateAttention):
                setattr(module, name, CoordinateAttentionExport(child))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(module, name, batchnorm_as_depthwise(child))
    if calibration is not None:
        equalize_frequency_averages(model, calibration)
        if weight_bias_correction:
            correct_weight_rounding_bias(model, calibration)
    return model


def int8_weight_grid(weight: torch.Tensor) -> torch.Tensor:
    """`weight` as TFLite's converter rounds it: per output channel, symmetric, scale max|w|/127."""
    scale = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-30) / 127.0
    scale = scale.view(-1, *([1] * (weight.dim() - 1)))
    return torch.clamp(torch.round(weight.detach() / scale), -127, 127) * scale


def correct_weight_rounding_bias(model: nn.Module, calibration: torch.Tensor) -> None:
    """Move each convolution's bias by minus the mean shift that rounding its weights to int8 causes on the
    calibration clips (bias correction, Nagel et al. 2019): E[conv(x, W_q − W)] per output channel, so the
    int8 graph's activations keep their float means. The rounding error is fixed once the weights are (the
    converter's scheme is known, int8_weight_grid), and a mean is one number a channel that an int32 bias can
    carry. The float function moves by what the rounding moves it the other way (the logits by 0.5–1.6 % of their range
    on trained BC-ResNets), and a conv without bias gets one (4 bytes a channel of flatbuffer).

    calibration: the graph's input on the calibration clips, NCHW."""
    # A conv whose weights lie on the grid already (Residual Normalization's means: one value, 127 steps) is left
    # alone, so that no bias is added where there is nothing to carry.
    convs = [m for m in model.modules()
             if isinstance(m, nn.Conv2d) and not torch.equal(int8_weight_grid(m.weight), m.weight.detach())]
    errors = {c: int8_weight_grid(c.weight).double() - c.weight.detach().double() for c in convs}
    shifts: dict[nn.Module, torch.Tensor] = {c: torch.zeros(c.out_channels, dtype=torch.float64) for c in convs}
    counts = {c: 0 for c in convs}

    def record(conv: nn.Conv2d, inputs: tuple) -> None:
        shift = F.conv2d(inputs[0].detach().double(), errors[conv], None, conv.stride, conv.padding, conv.dilation,
                         conv.groups)
        shifts[conv] += shift.sum(dim=(0, 2, 3))
        counts[conv] += shift.numel() // shift.shape[1]

    _run_with_hooks(model, calibration, [c.register_forward_pre_hook(record) for c in convs])
    for conv in convs:
        if counts[conv] == 0:
            continue
        mean_shift = (shifts[conv] / counts[conv]).float()
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        conv.bias.data.sub_(mean_shift)
