"""Each of the eight augmentations does what it says, keeps shapes, and is reproducible from its seed."""

import numpy as np
import pytest
import torch

from mcuasc.augment import (RECIPES, add_noise, apply_feature_augmentations, apply_waveform_augmentations,
                            frequency_mask, frequency_warp, mixup, pitch_shift, speed_change, time_mask, time_warp)

RATE = 44100
t = np.arange(RATE) / RATE
TONE = 0.5 * np.sin(2 * np.pi * 440 * t)


def peak_hz(x):
    segment = x[4410:39690]
    return np.argmax(np.abs(np.fft.rfft(segment * np.hanning(segment.size)))) * RATE / segment.size


def test_noise_addition_hits_the_requested_snr():
    noisy = add_noise(TONE, 15.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(TONE**2) / np.mean((noisy - TONE) ** 2))
    assert abs(snr - 15.0) < 0.2


def test_speed_change_scales_pitch_and_keeps_length():
    faster = speed_change(TONE, 1.25)
    assert faster.shape == TONE.shape
    assert abs(peak_hz(faster[: int(RATE / 1.25)]) - 550) < 5
    assert np.all(speed_change(TONE, 1.25)[int(RATE / 1.25) + 10 :] == 0)  # ran out: padded


@pytest.mark.parametrize("semitones", [-3.0, 4.0])
def test_pitch_shift_moves_a_tone_and_keeps_length(semitones):
    shifted = pitch_shift(TONE, semitones)
    assert shifted.shape == TONE.shape
    expected = 440 * 2 ** (semitones / 12)
    assert abs(peak_hz(shifted) / expected - 1) < 0.1


def test_masks_fill_one_span_with_the_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 64, 40)
    y = time_mask(x, 10, 1, g)
    changed = (y != x).any(dim=2)  # (batch, channel, frames)
    for row in changed[:, 0]:
        frames = torch.nonzero(row).flatten()
        assert frames.numel() <= 10
        if frames.numel():
            assert frames.max() - frames.min() + 1 == frames.numel()  # one contiguous span
    z = frequency_mask(x, 16, 2, g)
    assert ((z != x).any(dim=3).sum(dim=2) <= 32).all()
    assert torch.allclose(z[z != x], x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)[z != x])


def test_warps_keep_shape_and_move_content():
    g = torch.Generator().manual_seed(2)
    ramp = torch.arange(40.0).expand(2, 1, 16, 40).clone()
    warped = time_warp(ramp, 5, g)
    assert warped.shape == ramp.shape
    assert torch.all(warped[..., 1:] >= warped[..., :-1])  # monotone: a warp, not a shuffle
    assert warped[..., 0].eq(0).all() and warped[..., -1].eq(39).all()  # ends stay
    assert not torch.equal(warped, ramp)
    fw = frequency_warp(torch.arange(16.0).view(1, 1, 16, 1).expand(2, 1, 16, 5).clone(), 3, g)
    assert fw.shape == (2, 1, 16, 5)


def test_mixup_is_convex():
    g = torch.Generator().manual_seed(3)
    x, targets = torch.randn(6, 1, 8, 8), torch.eye(6)
    torch.manual_seed(0)
    mixed, soft = mixup(x, targets, 0.4, g)
    assert torch.allclose(soft.sum(dim=1), torch.ones(6))
    lam = soft.max(dim=1).values.min()
    assert 0 <= lam <= 1 and mixed.shape == x.shape


def test_recipes_match_the_seed_and_are_reproducible():
    assert not RECIPES["bcresnet"].uses_waveform and RECIPES["bcresnet"].mixup_alpha > 0
    assert RECIPES["bcresnet"].frequency_warp_shift == 0 and RECIPES["bcresnet-fw"].frequency_warp_shift > 0
    assert RECIPES["mobilenetv2"].uses_waveform and RECIPES["mobilenetv2"].frequency_mask_width == 0
    pcm = np.random.default_rng(5).integers(-3000, 3000, (3, RATE)).astype(np.int16)
    a = apply_waveform_augmentations(pcm, RECIPES["mobilenetv2"], np.random.default_rng(9))
    b = apply_waveform_augmentations(pcm, RECIPES["mobilenetv2"], np.random.default_rng(9))
    assert a.dtype == np.int16 and a.shape == pcm.shape and np.array_equal(a, b)
    x = torch.randn(4, 1, 256, 44)
    f1 = apply_feature_augmentations(x, RECIPES["bcresnet"], torch.Generator().manual_seed(4))
    f2 = apply_feature_augmentations(x, RECIPES["bcresnet"], torch.Generator().manual_seed(4))
    assert torch.equal(f1, f2) and not torch.equal(f1, x)
