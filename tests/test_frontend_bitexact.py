"""The numpy integer path and the rendered C agree bit for bit, on every clip of the corpus, for every config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcuasc.errors import ToolError
from mcuasc.frontend import PRESETS, IntegerFrontend, preset
from mcuasc.frontend.c_source import render_frontend
from mcuasc.frontend.host import CFrontend
from mcuasc.testsignals import hostile_corpus, realistic_corpus

from conftest import require_tool

# The presets, plus variants that exercise every branch of the generic code (window, mel scale and norm,
# FFT size, rate, clip length, delta width, a model-provided quantization).
CONFIGS = {
    **PRESETS,
    "hann-htk-slaney-512": dataclasses.replace(
        preset("bcresnet"), name="v1", sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="hann",
        n_mels=64, fmin=50.0, fmax=7600.0, mel_scale="htk", mel_norm="slaney",
    ),
    # The smallest FFT: 8 complex points, one radix-2 stage and one radix-4 stage with a twiddle.
    "tiny-fft-16": dataclasses.replace(
        preset("bcresnet"), name="v5", sample_rate=8000, n_fft=16, win_length=16, hop_length=8, n_mels=8, fmax=4000.0,
    ),
    # Odd window bounds (samples [55, 457)) and an odd hop: the window pass's odd first and last samples.
    "odd-window-and-hop": dataclasses.replace(
        preset("bcresnet"), name="v6", sample_rate=16000, n_fft=512, win_length=402, hop_length=161, n_mels=40,
        fmax=8000.0,
    ),
    "deltas-wide-2s-magnitude": dataclasses.replace(
        preset("mobilenetv2"), name="v2", clip_seconds=2.0, delta_width=9, power=1, n_mels=48, log_floor_db=-120.0,
    ),
    "model-quantization": preset("mobilenetv2").with_quantization(0.0421, -77, "test"),
    "residual-norm": dataclasses.replace(preset("bcresnet"), name="v3", residual_norm=True).with_quantization(0.0236, -3, "test"),
    "residual-norm-magnitude-tight-floor": dataclasses.replace(
        preset("dcase-baseline"), name="v4", residual_norm=True, residual_norm_lambda=0.5, residual_norm_eps_db2=0.001,
    ).with_quantization(0.05, 10, "test"),
}


def corpus(cfg) -> tuple[list[str], np.ndarray]:
    clips = {**hostile_corpus(cfg.clip_samples, cfg.sample_rate), **realistic_corpus(cfg.clip_samples, cfg.sample_rate, count=6)}
    return list(clips), np.stack(list(clips.values()))


def first_difference(a: np.ndarray, b: np.ndarray, names: list[str]) -> str:
    clip, mel, frame, channel = np.argwhere(a != b)[0]
    return (f"{np.count_nonzero(a != b)} values differ; first in clip {names[clip]!r}, mel {mel}, frame {frame}, "
            f"channel {channel}: numpy {a[clip, mel, frame, channel]}, C {b[clip, mel, frame, channel]}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_numpy_and_c_are_identical_on_the_whole_corpus(name):
    require_tool("gcc", "gcc")
    cfg = CONFIGS[name]
    names, pcm = corpus(cfg)
    numpy_features = IntegerFrontend(cfg)(pcm)
    c_features = CFrontend(cfg)(pcm)
    assert numpy_features.shape == c_features.shape == (len(names), *cfg.shape)
    assert np.array_equal(numpy_features, c_features), first_difference(numpy_features, c_features, names)
    # Not vacuous: the corpus drives the features across the int8 range.
    assert numpy_features.min() == -128 and numpy_features.max() > 40


def test_the_comparison_catches_a_small_table_change():
    """Raise one mel band's gain by 0.03 dB in the rendered C: the harness must then disagree with numpy."""
    require_tool("gcc", "gcc")
    cfg = preset("bcresnet")
    sources = render_frontend(cfg)
    tables = sources["mcuasc_frontend_tables.c"]
    marker = "const int32_t mcuasc_mel_log2_gain_q16[256] = {\n"
    head, tail = tables.split(marker)
    values, rest = tail.split("};", 1)
    gains = [int(v) for v in values.replace(",", " ").split()]
    gains[100] += 700  # log2 Q16: 700 / 65536 · 3.01 dB
    sources["mcuasc_frontend_tables.c"] = head + marker + ", ".join(map(str, gains)) + "\n};" + rest
    _, pcm = corpus(cfg)
    assert not np.array_equal(IntegerFrontend(cfg)(pcm), CFrontend(cfg, frontend_sources=sources)(pcm))


def test_sanitizers_run_clean_on_random_full_scale_input():
    """-fsanitize=address,undefined with no recovery: any finding aborts the harness and fails here."""
    require_tool("gcc", "gcc")
    rng = np.random.default_rng(1234)
    for name in ("bcresnet", "mobilenetv2", "dcase-baseline"):
        cfg = preset(name)
        pcm = rng.integers(-32768, 32768, size=(8, cfg.clip_samples)).astype(np.int16)
        pcm[0] = 32767
        pcm[1] = -32768
        try:
            sanitized = CFrontend(cfg, sanitize=True)(pcm)
        except ToolError as exc:
            pytest.fail(f"sanitized C front end failed: {exc}")
        assert np.array_equal(sanitized, IntegerFrontend(cfg)(pcm))


def test_rendering_is_deterministic_and_readable():
    a = render_frontend(preset("mobilenetv2"))
    b = render_frontend(preset("mobilenetv2"))
    assert a == b
    code = a["mcuasc_frontend.c"]
    assert "malloc" not in code and "float" not in code and "double" not in code
    assert all(text.startswith("/* Generated by mcuasc") for text in a.values())
