"""Deterministic test signals as int16 clips: the hostile corpus and realistic scenes.

Used by the bit-exactness tests, the precision benchmark, the demo and (later) simulate's and the
emulator's checks, so every stage is proven on the same material.
"""

from __future__ import annotations

import numpy as np

FULL_SCALE = 32767


def to_int16(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] → int16 with rounding and saturation (so full scale and clipping are reachable)."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain, normalised to unit peak."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / np.abs(x).max()


def chirp(n: int, rate: int, f0: float, f1: float) -> np.ndarray:
    t = np.arange(n) / rate
    duration = n / rate
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * duration)))


def hostile_corpus(n: int, rate: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Edge cases of level and shape, each an int16 clip of n samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    sine = np.sin(2 * np.pi * 1000.0 * t)
    impulses = np.zeros(n)
    for position in (0, 1, n // 2, n // 3 + 7, n - 1):
        impulses[position] = 1.0
    white = rng.uniform(-1.0, 1.0, n)
    corpus = {
        "silence": np.zeros(n),
        "dc_positive": np.full(n, 0.25),
        "dc_negative_full_scale": np.full(n, -1.0),
        "sine_1k_full_scale": sine * (FULL_SCALE / 32768),
        "sine_nyquist_region": np.sin(2 * np.pi * 0.49 * rate * t),
        "square_full_scale": np.where(np.sin(2 * np.pi * 440.0 * t) >= 0, 1.0, -1.0),
        "sine_hard_clipped": np.clip(4.0 * sine, -1.0, 1.0),
        "sine_overdriven": 1.5 * np.sin(2 * np.pi * 97.0 * t),  # saturates in to_int16
        "impulses_full_scale": impulses,
        "impulse_negative": -impulses,
        "single_lsb_impulse": impulses / 32768.0,
        "chirp_full_scale": chirp(n, rate, 20.0, rate / 2),
        "chirp_quiet": 1e-3 * chirp(n, rate, rate / 2, 50.0),
        "white_full_scale": white,
        "white_minus_60dbfs": 1e-3 * white,
        "pink_full_scale": pink_noise(n, rng),
        "pink_minus_60dbfs": 1e-3 * pink_noise(n, rng),
        "alternating_extremes": np.where(np.arange(n) % 2 == 0, 1.0, -1.0),
        "half_silent": np.where(t < t[-1] / 2, 0.0, white),
    }
    clips = {name: to_int16(x) for name, x in corpus.items()}
    clips["random_pcm"] = rng.integers(-32768, 32768, n).astype(np.int16)
    clips["random_pcm_small"] = rng.integers(-2, 3, n).astype(np.int16)
    return clips


def realistic_corpus(n: int, rate: int, seed: int = 0, count: int = 12) -> dict[str, np.ndarray]:
    """Scene-like clips: noise mixtures, speech-like bursts, tones over noise, at varied levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    clips = {}
    for i in range(count):
        kind = ("noise_mixture", "speech_like_bursts", "tones_over_noise")[i % 3]
        level = 10 ** (rng.uniform(-40, -3) / 20)
        if kind == "noise_mixture":
            x = rng.uniform(0.2, 1) * pink_noise(n, rng) + rng.uniform(0, 0.5) * rng.standard_normal(n) / 3
            x += rng.uniform(0, 0.5) * np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
        elif kind == "speech_like_bursts":
            # Harmonic bursts with a wandering pitch under a syllable-rate envelope, over faint noise.
            pitch = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
            phase = 2 * np.pi * np.cumsum(pitch) / rate
            voice = sum(np.sin(k * phase) / k for k in range(1, 12))
            envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
            x = voice * envelope + 0.02 * pink_noise(n, rng)
        else:
            tones = sum(
                rng.uniform(0.1, 1) * np.sin(2 * np.pi * rng.uniform(50, 8000) * t + rng.uniform(0, 6))
                for _ in range(rng.integers(1, 5))
            )
            x = tones + rng.uniform(0.05, 0.5) * pink_noise(n, rng)
        x = x / np.abs(x).max() * level
        clips[f"{kind}_{i:02d}"] = to_int16(x)
    return clips


def street_scene(seconds: float = 1.0, rate: int = 44100, seed: int = 7) -> np.ndarray:
    """A synthetic 'street traffic' second: pink rumble, an engine hum with harmonics, a horn, footsteps."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rumble = 0.3 * pink_noise(n, rng)
    engine = sum(0.08 / k * np.sin(2 * np.pi * 43.0 * k * t * (1 + 0.02 * t)) for k in range(1, 8))
    horn = 0.12 * np.sin(2 * np.pi * 415.0 * t) * ((t > 0.55) & (t < 0.8))
    steps = np.zeros(n)
    for start in (0.1, 0.35, 0.6, 0.85):
        i = int(start * rate)
        steps[i : i + 400] += 0.4 * rng.standard_normal(400) * np.exp(-np.arange(400) / 60)
    return to_int16(0.7 * (rumble + engine + horn + steps))
