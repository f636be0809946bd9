"""One clip's features from a WAV file with a chosen implementation: the library side of `mcuasc features`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuasc.audio import Audio, fit_to_clip, read_wav
from mcuasc.errors import InputError
from mcuasc.frontend import PRESETS, FloatFrontend, FrontendConfig, IntegerFrontend, preset
from mcuasc.frontend.host import CFrontend
from mcuasc.outputs import write_new_file

IMPLEMENTATIONS = ("integer", "c", "float")


@dataclass(frozen=True)
class FeatureResult:
    features: np.ndarray  # int8 (integer, c) or float32 (float), shape cfg.shape
    cfg: FrontendConfig
    impl: str
    audio: Audio
    notes: tuple[str, ...]  # what was done to the audio on the way (resampling, downmix, pad/trim)


def resolve_config(preset_name: str | None, config_path: str | Path | None) -> FrontendConfig:
    """--preset or --config (not both); the bcresnet preset when neither is given."""
    if preset_name and config_path:
        raise InputError("give either --preset or --config, not both.")
    if config_path:
        return FrontendConfig.load(config_path)
    return preset(preset_name or next(iter(PRESETS)))


def frontend(cfg: FrontendConfig, impl: str):
    if impl == "integer":
        return IntegerFrontend(cfg)
    if impl == "c":
        return CFrontend(cfg)
    if impl == "float":
        return FloatFrontend(cfg)
    raise InputError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}.")


def extract_features(path: str | Path, cfg: FrontendConfig, impl: str = "integer") -> FeatureResult:
    compute = frontend(cfg, impl)
    audio = read_wav(path, cfg.sample_rate)
    samples, fit_note = fit_to_clip(audio.samples, cfg.clip_samples)
    notes = audio.notes + ((fit_note,) if fit_note else ())
    return FeatureResult(compute(samples), cfg, impl, audio, notes)


def save_npy(array: np.ndarray, path: str | Path, *, force: bool = False) -> Path:
    """Write atomically; never replace an existing file unless force."""
    path = Path(path)
    if path.suffix != ".npy":
        raise InputError(f"output {path} must end in .npy; name it e.g. {path.with_suffix('.npy').name}.")
    buffer = io.BytesIO()
    np.save(buffer, array)
    return write_new_file(path, buffer.getvalue(), force=force)


def summarize(features: np.ndarray, cfg: FrontendConfig) -> list[dict[str, object]]:
    """Per channel: range, mean, and for int8 the share of saturated values."""
    names = ("log-mel", "delta", "delta-delta")[: cfg.n_channels]
    rows = []
    for c, name in enumerate(names):
        x = features[..., c]
        row: dict[str, object] = {"channel": name, "min": x.min().item(), "max": x.max().item(), "mean": float(x.mean())}
        if x.dtype == np.int8:
            row["saturated"] = float(np.mean((x == -128) | (x == 127)))
            row["mean_db"] = float((x.astype(np.float64) - cfg.output_zero_point).mean() * cfg.output_scale)
        rows.append(row)
    return rows
