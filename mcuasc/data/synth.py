"""A deterministic synthetic ten-scene set in the TAU 2022 layout, so every command runs without the dataset.

Each scene is a recipe of ingredients (noise colours, tonal hums, transients, babble-like bursts) whose
parameters are drawn per clip from ranges that overlap between scenes, so the classes are separable but not
trivially. Each clip is then "recorded" by a simulated device — an EQ, a gain, a noise floor and a sample-rate
round trip — and devices s4–s6 appear only in the evaluation split: the seed's device mismatch in miniature.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal

from mcuasc.audio import float_to_int16, write_wav
from mcuasc.data.tau import load_labels
from mcuasc.errors import InputError
from mcuasc.outputs import claim_output_dir

RATE = 44100
MARKER = ".mcuasc-synth-data"
CITIES = ("lisbon", "lyon", "prague", "vienna", "milan")
TRAIN_DEVICES = ("a", "a", "a", "b", "c", "s1", "s2", "s3")  # device A dominates, as in TAU
EVALUATE_DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")


def _filter(kind: str, cutoff, rate: int = RATE, order: int = 2) -> np.ndarray:
    return scipy.signal.butter(order, cutoff, btype=kind, fs=rate, output="sos")


def coloured_noise(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """Noise with a power spectrum ∝ f^slope (0 white, −1 pink, −2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    spectrum *= f ** (slope / 2)
    x = np.fft.irfft(spectrum, n)
    return x / (np.std(x) + 1e-12)


def hum(rng: np.random.Generator, t: np.ndarray, f0: tuple[float, float], harmonics: int, drift: float = 0.0) -> np.ndarray:
    base = rng.uniform(*f0) * (1 + drift * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    phase = 2 * np.pi * np.cumsum(base) / RATE
    return sum(rng.uniform(0.3, 1.0) / k * np.sin(k * phase + rng.uniform(0, 6)) for k in range(1, harmonics + 1))


def babble(rng: np.random.Generator, t: np.ndarray, voices: int) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(voices):
        pitch = rng.uniform(90, 260) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 10))
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
        out += voice * envelope
    return out / max(voices, 1)


def transients(rng: np.random.Generator, n: int, count: int, decay: float, lowpass: float) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(count):
        start = rng.integers(0, n - 2000)
        length = 2000
        out[start : start + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / (decay * RATE))
    return scipy.signal.sosfilt(_filter("lowpass", lowpass), out)


def chirps(rng: np.random.Generator, t: np.ndarray, count: int, band: tuple[float, float]) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(count):
        start, length = rng.uniform(0, 0.9), rng.uniform(0.03, 0.12)
        f0, f1 = rng.uniform(*band), rng.uniform(*band)
        inside = (t >= start) & (t < start + length)
        tau = t[inside] - start
        out[inside] += np.sin(2 * np.pi * (f0 * tau + (f1 - f0) * tau**2 / (2 * length))) * np.hanning(inside.sum())
    return out


def tones(rng: np.random.Generator, t: np.ndarray, band: tuple[float, float], count: int, gated: bool) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(count):
        tone = np.sin(2 * np.pi * rng.uniform(*band) * t + rng.uniform(0, 6))
        if gated:
            start = rng.uniform(0, 0.7)
            tone *= (t > start) & (t < start + rng.uniform(0.15, 0.3))
        out += tone
    return out


def _mix(*parts: tuple[float, np.ndarray]) -> np.ndarray:
    return sum(level * x / (np.std(x) + 1e-12) for level, x in parts)


# scene → recipe(rng, t) → float signal. Levels are drawn from overlapping ranges.
def _recipe(scene: str) -> Callable[[np.random.Generator, np.ndarray], np.ndarray]:
    def make(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
        n = t.size
        u = rng.uniform
        if scene == "airport":
            return _mix((u(.5, 1), babble(rng, t, 6)), (u(.4, .9), coloured_noise(rng, n, -1)), (u(.1, .5), tones(rng, t, (500, 1200), 2, True)))
        if scene == "shopping_mall":
            return _mix((u(.5, 1), babble(rng, t, 8)), (u(.2, .6), tones(rng, t, (200, 900), 3, False)), (u(.3, .7), coloured_noise(rng, n, -1)))
        if scene == "metro_station":
            return _mix((u(.5, 1), coloured_noise(rng, n, -2)), (u(.3, .8), babble(rng, t, 4)), (u(.1, .5), tones(rng, t, (2000, 4000), 1, True)))
        if scene == "street_pedestrian":
            return _mix((u(.4, .9), transients(rng, n, 6, 0.01, 3000)), (u(.3, .8), babble(rng, t, 3)), (u(.3, .8), coloured_noise(rng, n, -1.5)))
        if scene == "public_square":
            return _mix((u(.3, .8), chirps(rng, t, 4, (2500, 6000))), (u(.3, .8), babble(rng, t, 3)), (u(.4, .9), coloured_noise(rng, n, -0.5)))
        if scene == "street_traffic":
            return _mix((u(.5, 1), hum(rng, t, (35, 80), 8, 0.05)), (u(.5, 1), coloured_noise(rng, n, -1.2)), (u(0, .4), tones(rng, t, (350, 500), 1, True)))
        if scene == "tram":
            return _mix((u(.4, .9), hum(rng, t, (250, 700), 3, 0.2)), (u(.4, .9), coloured_noise(rng, n, -1.8)), (u(.1, .5), transients(rng, n, 2, 0.05, 6000)))
        if scene == "bus":
            return _mix((u(.6, 1), hum(rng, t, (45, 110), 10, 0.03)), (u(.2, .6), babble(rng, t, 2)), (u(.3, .7), coloured_noise(rng, n, -1.5)))
        if scene == "metro":
            return _mix((u(.6, 1), coloured_noise(rng, n, -2.2)), (u(.2, .7), tones(rng, t, (1500, 3500), 2, True)), (u(.3, .7), transients(rng, n, 5, 0.02, 1500)))
        # park
        return _mix((u(.4, .9), chirps(rng, t, 6, (2000, 8000))), (u(.3, .8), coloured_noise(rng, n, -1.7) * (1 + 0.5 * np.sin(2 * np.pi * u(.2, 1) * t))), (u(0, .3), hum(rng, t, (40, 90), 4)))

    return make


@dataclass(frozen=True)
class Device:
    name: str
    sos: np.ndarray | None  # EQ
    gain_db: float
    noise_floor_db: float  # relative to full scale
    resample_rate: int | None  # a conversion round trip through this rate

    def record(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.resample_rate:
            down = scipy.signal.resample_poly(x, self.resample_rate, RATE)
            x = scipy.signal.resample_poly(down, RATE, self.resample_rate)[: x.size]
        if self.sos is not None:
            x = scipy.signal.sosfilt(self.sos, x)
        x = x * 10 ** (self.gain_db / 20)
        return x + 10 ** (self.noise_floor_db / 20) * rng.standard_normal(x.size)


DEVICES = {
    d.name: d
    for d in (
        Device("a", None, 0.0, -85.0, None),
        Device("b", _filter("bandpass", (150, 9000)), -3.0, -75.0, None),
        Device("c", _filter("highpass", 100), 2.0, -70.0, 16000),
        Device("s1", _filter("lowpass", 11000, order=4), -1.0, -80.0, None),
        Device("s2", _filter("highpass", 300), -6.0, -72.0, 22050),
        Device("s3", _filter("lowpass", 6500), 3.0, -68.0, None),
        # Only in the evaluation split:
        Device("s4", _filter("bandpass", (300, 3400)), 0.0, -65.0, 8000),
        Device("s5", _filter("highpass", 600), -8.0, -78.0, 22050),
        Device("s6", _filter("lowpass", 4500, order=4), 4.0, -60.0, 11025),
    )
}


def _prepare(out_dir: Path) -> None:
    claim_output_dir(out_dir, MARKER, "mcuasc synth-data")
    (out_dir / "audio").mkdir(exist_ok=True)
    (out_dir / "evaluation_setup").mkdir(exist_ok=True)


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def synthesize_dataset(out_dir: str | Path, clips_per_class: int = 20, seed: int = 0,
                       evaluate_share: float = 0.3, progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Write the set; returns a summary (counts per split and device). Same arguments, same bytes."""
    if clips_per_class < 2:
        raise InputError("clips_per_class must be at least 2 (one for training, one for evaluation).")
    out_dir = Path(out_dir)
    _prepare(out_dir)
    labels = load_labels()
    t = np.arange(RATE) / RATE
    meta, train, evaluate = [], [], []
    n_evaluate = max(1, round(clips_per_class * evaluate_share))
    total = len(labels) * clips_per_class
    for scene_index, scene in enumerate(labels):
        recipe = _recipe(scene)
        for i in range(clips_per_class):
            rng = np.random.default_rng([seed, scene_index, i])
            in_evaluate = i >= clips_per_class - n_evaluate
            device = str(rng.choice(EVALUATE_DEVICES if in_evaluate else TRAIN_DEVICES))
            city = str(rng.choice(CITIES))
            signal = DEVICES[device].record(recipe(rng, t), rng)
            signal *= 10 ** (rng.uniform(-30, -8) / 20) / (np.abs(signal).max() + 1e-12)  # level: −30 to −8 dBFS peak
            filename = f"audio/{scene}-{city}-{scene_index * 1000 + i}-{i}-{device}.wav"
            write_wav(out_dir / filename, float_to_int16(signal), RATE, bits=24)
            meta.append([filename, scene, f"{city}-{scene_index * 1000 + i}", device])
            (evaluate if in_evaluate else train).append([filename, scene])
            if progress:
                progress(len(meta), total)
    _write_tsv(out_dir / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    _write_tsv(out_dir / "evaluation_setup" / "fold1_train.csv", ["filename", "scene_label"], train)
    _write_tsv(out_dir / "evaluation_setup" / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    _write_tsv(out_dir / "evaluation_setup" / "fold1_test.csv", ["filename"], [[f] for f, _ in evaluate])
    return {"root": str(out_dir), "clips": len(meta), "train": len(train), "evaluate": len(evaluate), "labels": labels}
