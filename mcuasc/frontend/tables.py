"""Constant tables of the integer front end, computed once from a FrontendConfig.

The numpy integer path computes with these arrays and the C renderer prints these same arrays, so the two
implementations cannot drift apart. Fixed-point formats (Qn = n fractional bits):

- ``window_q15``      uint16, window w[n]·2^15 (1.0 → 32768), n_fft long, zero outside the window.
- ``twiddle_q23``     int32 pairs (cos, −sin)(2πk/N)·2^23 for k = 0..N/2: 1.0 is exact, and every butterfly
                      product of a 28-bit sample stays below 2^52 (−144 dB twiddle error, far below what matters).
                      The N/2-point complex FFT uses every other entry; the real-FFT split uses them all.
- ``bit_reverse``     uint16 bit-reversal permutation of the N/2-point complex FFT.
- ``mel_weights_q15`` uint16, each band's non-zero triangle divided by its own peak (peak → 32768), packed;
                      ``mel_first_bin``/``mel_n_bins``/``mel_weight_offset`` index it. Dividing by the peak
                      keeps 15 bits of precision in narrow and wide bands alike; the peak comes back exactly,
                      as ``mel_log2_gain_q16`` = log2(peak)·2^16, added in the log domain.
- ``log2_table_q16``  int32, log2(1 + i/128)·2^16 for i = 0..128, linearly interpolated.
- output multipliers  q = ((v·mult + 2^(shift−1)) >> shift) + zero_point, per channel (log-mel, Δ, ΔΔ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.signal

from mcuasc.frontend.config import FrontendConfig

Q15 = 1 << 15
Q16 = 1 << 16
Q31 = 1 << 31
LOG2_TABLE_BITS = 7  # 128 segments: interpolation error < 3e-6 in log2, i.e. < 1e-5 dB
NORMALISED_BITS = 28  # each windowed frame is shifted so that max |x| < 2^28: FFT headroom, see integer.py
TWIDDLE_BITS = 23
SPECTRUM_BITS = 40  # power spectrum bins are kept below 2^40 so that Σ p·w fits in 64 bits


def float_window(cfg: FrontendConfig) -> np.ndarray:
    """The analysis window, float64, n_fft long: a periodic window of win_length centred in n_fft."""
    win = scipy.signal.get_window(cfg.window, cfg.win_length, fftbins=True)
    left = (cfg.n_fft - cfg.win_length) // 2
    padded = np.zeros(cfg.n_fft)
    padded[left : left + cfg.win_length] = win
    return padded


def hz_to_mel(freq: np.ndarray | float, scale: str) -> np.ndarray:
    freq = np.asanyarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    # Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above (librosa's default).
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    lin = freq / f_sp
    with np.errstate(divide="ignore"):
        log = min_log_mel + np.log(np.maximum(freq, 1e-12) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log, lin)


def mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def float_mel_weights(cfg: FrontendConfig) -> np.ndarray:
    """Triangular mel filterbank, float64 (n_mels, n_bins), computed as librosa.filters.mel does."""
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_bins)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale), cfg.n_mels + 2),
        cfg.mel_scale,
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if cfg.mel_norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def quantize_multiplier(factor: float) -> tuple[int, int]:
    """factor ≈ mult · 2^−shift with mult in [2^30, 2^31): a rounding shift applies it exactly in integers."""
    mantissa, exponent = math.frexp(factor)  # factor = mantissa · 2^exponent, mantissa in [0.5, 1)
    mult = int(round(mantissa * Q31))
    if mult == Q31:
        mult, exponent = mult // 2, exponent + 1
    shift = 31 - exponent
    if not 1 <= shift <= 62:
        raise ValueError(f"output scale gives a multiplier {factor:g} outside what 64-bit arithmetic can apply")
    return mult, shift


@dataclass(frozen=True, eq=False)
class FrontendTables:
    cfg: FrontendConfig
    window_q15: np.ndarray
    window_start: int  # first and one-past-last non-zero window sample
    window_stop: int
    twiddle_q23: np.ndarray  # (N/2 + 1, 2) int32
    bit_reverse: np.ndarray  # (N/2,) uint16
    mel_first_bin: np.ndarray  # (n_mels,) uint16
    mel_n_bins: np.ndarray  # (n_mels,) uint16
    mel_weight_offset: np.ndarray  # (n_mels,) uint32
    mel_weights_q15: np.ndarray  # packed uint16
    mel_weights_dense_q15: np.ndarray  # (n_bins, n_mels) the same integers as a dense matrix
    mel_log2_gain_q16: np.ndarray  # (n_mels,) int32
    log2_table_q16: np.ndarray  # (129,) int32
    log2_exponent_offset: int  # see integer.py: log2 of the float feature = log2(mel) + gain − (this + p·s − sp)
    log_floor_q16: int
    db_per_log2: float
    output_mult: tuple[int, ...]  # one per channel
    output_shift: tuple[int, ...]
    # Residual Normalization (cfg.residual_norm): variance floor in Q32 log2² units, λ·dB-per-log2 in Q16.
    norm_eps_q32: int = 0
    norm_lambda_q16: int = 0

    @property
    def fft_bits(self) -> int:
        return self.cfg.n_fft.bit_length() - 1


@lru_cache(maxsize=16)
def build_tables(cfg: FrontendConfig) -> FrontendTables:
    n = cfg.n_fft
    half = n // 2

    window = float_window(cfg)
    window_q15 = np.round(window * Q15).astype(np.int64)
    if window_q15.min() < 0 or window_q15.max() > Q15:
        raise ValueError("window values must lie in [0, 1]")
    nonzero = np.flatnonzero(window_q15)
    window_start, window_stop = int(nonzero[0]), int(nonzero[-1]) + 1

    angle = 2.0 * np.pi * np.arange(half + 1) / n
    twiddle = np.stack([np.cos(angle), -np.sin(angle)], axis=1)
    twiddle_q23 = np.round(twiddle * (1 << TWIDDLE_BITS)).astype(np.int32)

    bits = half.bit_length() - 1
    index = np.arange(half)
    reverse = np.zeros(half, dtype=np.int64)
    for b in range(bits):
        reverse |= ((index >> b) & 1) << (bits - 1 - b)

    weights = float_mel_weights(cfg)
    first, count, offset, packed, gains = [], [], [], [], []
    dense = np.zeros((cfg.n_bins, cfg.n_mels))
    for m, row in enumerate(weights):
        peak = row.max()
        q = np.round(row / peak * Q15).astype(np.int64) if peak > 0 else np.zeros_like(row, dtype=np.int64)
        nz = np.flatnonzero(q)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)  # an empty band reads as silence
        first.append(lo)
        count.append(hi - lo)
        offset.append(len(packed))
        packed.extend(q[lo:hi].tolist())
        dense[lo:hi, m] = q[lo:hi]
        gains.append(int(round(math.log2(peak) * Q16)) if peak > 0 else 0)

    # Σ p·w < 2^SPECTRUM_BITS · Σ w must fit in uint64 for the widest band (it does by a wide margin).
    widest = max((int(np.sum(packed[o : o + c])) for o, c in zip(offset, count)), default=0)
    if widest >= 1 << (64 - SPECTRUM_BITS):
        raise ValueError(f"a mel band sums {widest} Q15 weights: too wide for 64-bit accumulation")

    log2_table = np.round(np.log2(1.0 + np.arange((1 << LOG2_TABLE_BITS) + 1) / (1 << LOG2_TABLE_BITS)) * Q16)

    # Exponent bookkeeping (power p = 1 or 2, FFT of N = 2^B, frame shift s, power shift sp):
    # pcm/2^15 · window·2^15 = x·2^30; normalised ·2^s; the scaled FFT divides by N: X·2^(30+s−B).
    # |X|^p drops sp bits; mel weights carry 2^15. So log2(mel_float) = log2(mel_int) + gain − E with
    # E = 15 + p·(30 − B) + p·s − sp; the constant part is log2_exponent_offset.
    fft_bits = n.bit_length() - 1
    exponent_offset = 15 + cfg.power * (30 - fft_bits)

    db_per_log2 = 20.0 * math.log10(2.0) / cfg.power  # 10·log10 of power = 20·log10 of magnitude
    log_floor_q16 = int(math.floor(cfg.log_floor_db / db_per_log2 * Q16))
    step = db_per_log2 / Q16 / cfg.output_scale  # int8 steps per Q16 log2 unit
    half_width = cfg.delta_width // 2
    delta_denominator = 2 * sum(k * k for k in range(1, half_width + 1))  # HTK regression: Σ 2k²
    factors = [step] if not cfg.deltas else [step, step / delta_denominator, step / delta_denominator**2]
    norm_eps_q32 = norm_lambda_q16 = 0
    if cfg.residual_norm:
        # The normalised log-mel is accumulated in Q16 of its own (dB-like) units: one int8 step = scale.
        factors = [1.0 / (Q16 * cfg.output_scale)]
        norm_eps_q32 = max(1, round(cfg.residual_norm_eps_db2 / db_per_log2**2 * 2.0**32))
        norm_lambda_q16 = round(cfg.residual_norm_lambda * db_per_log2 * Q16)
    mults, shifts = zip(*(quantize_multiplier(f) for f in factors))

    return FrontendTables(
        cfg=cfg,
        window_q15=window_q15.astype(np.uint16),
        window_start=window_start,
        window_stop=window_stop,
        twiddle_q23=twiddle_q23,
        bit_reverse=reverse.astype(np.uint16),
        mel_first_bin=np.array(first, dtype=np.uint16),
        mel_n_bins=np.array(count, dtype=np.uint16),
        mel_weight_offset=np.array(offset, dtype=np.uint32),
        mel_weights_q15=np.array(packed, dtype=np.uint16),
        mel_weights_dense_q15=dense,
        mel_log2_gain_q16=np.array(gains, dtype=np.int32),
        log2_table_q16=log2_table.astype(np.int32),
        log2_exponent_offset=exponent_offset,
        log_floor_q16=log_floor_q16,
        db_per_log2=db_per_log2,
        output_mult=tuple(mults),
        output_shift=tuple(shifts),
        norm_eps_q32=norm_eps_q32,
        norm_lambda_q16=norm_lambda_q16,
    )
