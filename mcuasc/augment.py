"""The seed's eight augmentations (§2.4): three on waveforms, five on feature maps; recipes say which are used.

Waveform (numpy, int16 in and out, one clip a row): noise addition, pitch shifting, speed change.
Features (torch, (batch, channels, mels, frames)): time masking, frequency masking, time warping, frequency
warping, mix-up. Every function takes its random generator, so a seed reproduces a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.signal
import torch

from mcuasc.audio import float_to_int16

# -- waveform -----------------------------------------------------------------------------------------


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at snr_db below the clip's power (Lashgari et al.)."""
    power = np.mean(x**2) + 1e-12
    return x + rng.standard_normal(x.shape) * np.sqrt(power / 10 ** (snr_db / 10))


def _resample(x: np.ndarray, factor: float) -> np.ndarray:
    """Resample to round(len·factor) samples (polyphase, ratio limited to 1/100 steps)."""
    ratio = Fraction(factor).limit_denominator(100)
    return scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def speed_change(x: np.ndarray, factor: float) -> np.ndarray:
    """Play factor× faster (pitch and tempo together), then crop or zero-pad to the original length."""
    return _fit(_resample(x, 1.0 / factor), len(x))


def time_stretch(x: np.ndarray, factor: float, frame: int = 2048) -> np.ndarray:
    """Overlap-add time stretch by factor (> 1 longer), pitch kept: Hann frames read at hop/factor."""
    hop_out = frame // 4
    hop_in = hop_out / factor
    window = np.hanning(frame)
    n_frames = int((len(x) - frame) / hop_in) + 1
    out = np.zeros(hop_out * (n_frames - 1) + frame)
    norm = np.zeros_like(out)
    for i in range(max(n_frames, 0)):
        start = int(round(i * hop_in))
        out[i * hop_out : i * hop_out + frame] += x[start : start + frame] * window
        norm[i * hop_out : i * hop_out + frame] += window**2
    return out / np.maximum(norm, 1e-3)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch keeping the length: stretch in time by 2^(s/12), then resample back (Schlüter & Grill)."""
    factor = 2.0 ** (semitones / 12)
    return _fit(_resample(time_stretch(x, factor), 1.0 / factor), len(x))


# -- feature maps -------------------------------------------------------------------------------------


def _fill(x: torch.Tensor) -> torch.Tensor:
    """Masks fill with each example's mean: features are dB, so zero would be a loud artefact."""
    return x.mean(dim=(1, 2, 3), keepdim=True)


def time_mask(x: torch.Tensor, max_width: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment time masks: up to max_width frames, count times, per example."""
    return _mask(x, 3, max_width, count, generator)


def frequency_mask(x: torch.Tensor, max_width: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment frequency masks: up to max_width mel bands, count times, per example."""
    return _mask(x, 2, max_width, count, generator)


def _mask(x: torch.Tensor, axis: int, max_width: int, count: int, generator: torch.Generator) -> torch.Tensor:
    size = x.shape[axis]
    positions = torch.arange(size).view(*([1] * axis), size, *([1] * (3 - axis)))
    masked = torch.zeros(x.shape[0], *([1] * 3), dtype=torch.bool).expand_as(x).clone()
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (x.shape[0],), generator=generator)
        start = (torch.rand(x.shape[0], generator=generator) * (size - width + 1)).long()
        shape = (-1, 1, 1, 1)
        masked |= (positions >= start.view(shape)) & (positions < (start + width).view(shape))
    return torch.where(masked, _fill(x).expand_as(x), x)


def _warp(x: torch.Tensor, axis: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Piecewise-linear warp along axis: a random point c moves to c + d, the two sides stretch to follow."""
    b, size = x.shape[0], x.shape[axis]
    if max_shift < 1 or size < 4:
        return x
    centre = torch.randint(1, size - 1, (b,), generator=generator).float()
    shift = (torch.rand(b, generator=generator) * 2 - 1) * max_shift
    target = (centre + shift).clamp(1, size - 2)
    out_pos = torch.arange(size).float().unsqueeze(0)  # where each output sample reads from:
    src = torch.where(out_pos < target[:, None], out_pos * centre[:, None] / target[:, None],
                      centre[:, None] + (out_pos - target[:, None]) * (size - 1 - centre[:, None]) / (size - 1 - target[:, None]))
    lo = src.floor().long().clamp(0, size - 1)
    hi = (lo + 1).clamp(max=size - 1)
    w = (src - lo.float())
    view = [b, 1, 1, 1]
    view[axis] = size
    index_shape = list(x.shape)
    lo_i, hi_i = lo.view(view).expand(index_shape), hi.view(view).expand(index_shape)
    w = w.view(view)
    return torch.gather(x, axis, lo_i) * (1 - w) + torch.gather(x, axis, hi_i) * w


def time_warp(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    return _warp(x, 3, max_shift, generator)


def frequency_warp(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    return _warp(x, 2, max_shift, generator)


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix-up (Zhang et al.): convex combinations of example pairs and of their (soft) targets."""
    # torch's Beta sampler takes no generator: draw λ with numpy, seeded from ours, so runs reproduce.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha)) if alpha > 0 else 1.0
    perm = torch.randperm(x.shape[0], generator=generator)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


# -- recipes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a recipe uses and how strongly; 0 turns one off."""

    noise_snr_db: tuple[float, float] = (0.0, 0.0)  # range of SNRs; (0, 0): off
    pitch_semitones: float = 0.0
    speed_range: float = 0.0  # factor in [1 − r, 1 + r]
    time_mask_width: int = 0
    time_mask_count: int = 1
    frequency_mask_width: int = 0
    frequency_mask_count: int = 1
    time_warp_shift: int = 0
    frequency_warp_shift: int = 0
    mixup_alpha: float = 0.0
    probability: float = 0.5  # chance each waveform augmentation is applied to a clip

    @property
    def uses_waveform(self) -> bool:
        return self.noise_snr_db != (0.0, 0.0) or self.pitch_semitones > 0 or self.speed_range > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES = {
    "none": AugmentConfig(),
    # seed §2.4: BC-ResNet uses time and frequency masking, time warping and mix-up (frequency warping in one system).
    "bcresnet": AugmentConfig(time_mask_width=6, frequency_mask_width=24, time_warp_shift=4, mixup_alpha=0.3),
    "bcresnet-fw": AugmentConfig(time_mask_width=6, frequency_mask_width=24, time_warp_shift=4, frequency_warp_shift=8,
                                 mixup_alpha=0.3),
    # seed §2.4: MobileNetV2 uses noise addition, pitch shifting, speed change, time masking and mix-up.
    "mobilenetv2": AugmentConfig(noise_snr_db=(10.0, 40.0), pitch_semitones=2.0, speed_range=0.1, time_mask_width=5,
                                 mixup_alpha=0.3),
}


def apply_waveform_augmentations(pcm: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """int16 (clips, samples) → int16, each clip independently augmented with probability cfg.probability."""
    out = pcm.astype(np.float64) / 32768.0
    for i in range(out.shape[0]):
        x = out[i]
        if cfg.speed_range > 0 and rng.random() < cfg.probability:
            x = speed_change(x, rng.uniform(1 - cfg.speed_range, 1 + cfg.speed_range))
        if cfg.pitch_semitones > 0 and rng.random() < cfg.probability:
            x = pitch_shift(x, rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones))
        if cfg.noise_snr_db != (0.0, 0.0) and rng.random() < cfg.probability:
            x = add_noise(x, rng.uniform(*cfg.noise_snr_db), rng)
        out[i] = x
    return float_to_int16(out)


def apply_feature_augmentations(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Warps, then masks, on a (batch, channels, mels, frames) tensor (mix-up is separate: it needs targets)."""
    if cfg.time_warp_shift:
        x = time_warp(x, cfg.time_warp_shift, generator)
    if cfg.frequency_warp_shift:
        x = frequency_warp(x, cfg.frequency_warp_shift, generator)
    if cfg.time_mask_width:
        x = time_mask(x, cfg.time_mask_width, cfg.time_mask_count, generator)
    if cfg.frequency_mask_width:
        x = frequency_mask(x, cfg.frequency_mask_width, cfg.frequency_mask_count, generator)
    return x
