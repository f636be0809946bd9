"""Constant tables of the integer front end, computed once from a FrontendConfig.

The numpy integer path computes with these arrays and the C renderer prints these same arrays, so the two
implementations cannot drift apart. Fixed-point formats (Qn = n fractional bits):

- ``window_q15``      uint16, window w[n]·2^15 (1.0 → 32768), n_fft long, zero outside the window.
- ``twiddle_q30``     int32 pairs (cos, −sin)(2πk/N)·2^30 for k = 0..N/2, for the real-FFT split; built for
                      k ≤ N/4 and mirrored, so that W^(N/2−k) = −conj(W^k) holds exactly (the C computes bins k
                      and N/2 − k from the same products).
- ``fft_twiddle_q30`` int32 (W, W², W³) pairs of each radix-4 stage's twiddles W = W_4h^j, j = 1..h−1, stage by
                      stage (``fft_stages`` gives each stage's h and first row): the order the C reads them in.
                      1.0 is exact in Q30, and a 29-bit sample times a twiddle stays below 2^60.
- ``bit_reverse``     uint16 bit-reversal permutation of the N/2-point complex FFT.
- ``mel_rise_q15``    uint16, the mel filterbank as its rising edges: the triangles of neighbouring bands cross,
                      so a bin k between the centres of bands m − 1 and m (segment m, bins in (e_m, e_m+1] of the
                      n_mels + 2 band edges e) has weight r_k in band m and exactly 1 − r_k in band m − 1, and
                      no other. ``mel_first_bin`` is segment 0's first bin, ``mel_segment_n_bins`` the bins of
                      segments 0..n_mels; r_k·2^15 is stored for every bin from the first one on. The triangles
                      have height 1; Slaney's area normalisation comes back exactly as ``mel_log2_gain_q16`` =
                      log2(2 / (e_m+2 − e_m))·2^16 (0 without it), added in the log domain.
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
TWIDDLE_BITS = 30
SPECTRUM_BITS = 40  # spectrum bins are below 2^40 so that Σ p·w fits in 64 bits


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
    edges = mel_edges(cfg)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if cfg.mel_norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def mel_edges(cfg: FrontendConfig) -> np.ndarray:
    """The n_mels + 2 band edges in Hz: band m rises from edge m to edge m + 1 and falls to edge m + 2."""
    return mel_to_hz(
        np.linspace(hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale), cfg.n_mels + 2),
        cfg.mel_scale,
    )


def mel_segments(cfg: FrontendConfig) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The integer filterbank as rising edges (see the module docstring): first bin, bins per segment, rising
    weights in Q15 from the first bin on, log2 gains in Q16, and the (n_bins, n_mels) int64 weights it amounts to."""
    edges = mel_edges(cfg)
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_bins)
    # Segment m holds the bins in (e_m, e_m+1]; bins at or below e_0 and above e_(n_mels+1) are in no band.
    bounds = np.searchsorted(fft_freqs, edges, side="right")  # first bin above each edge
    first_bin = int(bounds[0])
    segment_bins = np.diff(bounds).astype(np.uint16)
    rise = np.zeros(int(bounds[-1]) - first_bin, dtype=np.int64)
    dense = np.zeros((cfg.n_bins, cfg.n_mels), dtype=np.int64)
    for m in range(cfg.n_mels + 1):
        bins = np.arange(bounds[m], bounds[m + 1])
        r = np.round((fft_freqs[bins] - edges[m]) / (edges[m + 1] - edges[m]) * Q15).astype(np.int64)
        rise[bins - first_bin] = r
        if m < cfg.n_mels:
            dense[bins, m] = r
        if m > 0:
            dense[bins, m - 1] = Q15 - r
    if cfg.mel_norm == "slaney":
        gains = np.round(np.log2(2.0 / (edges[2:] - edges[:-2])) * Q16)
    else:
        gains = np.zeros(cfg.n_mels)
    return first_bin, segment_bins, rise.astype(np.uint16), gains.astype(np.int32), dense


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
    twiddle_q30: np.ndarray  # (N/2 + 1, 2) int32
    fft_twiddle_q30: np.ndarray  # (rows, 3, 2) int32: W, W², W³ of j = 1..h−1 of each radix-4 stage
    fft_stages: tuple[tuple[int, int], ...]  # radix-4 stages: (h, first row in fft_twiddle_q30)
    fft_first_radix2: bool  # log2(N/2) odd: one radix-2 stage comes first
    bit_reverse: np.ndarray  # (N/2,) uint16
    mel_first_bin: int  # first bin of segment 0
    mel_segment_n_bins: np.ndarray  # (n_mels + 1,) uint16
    mel_rise_q15: np.ndarray  # uint16, one per bin from mel_first_bin on
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

    angle = 2.0 * np.pi * np.arange(half // 2 + 1) / n
    quarter_table = np.round(np.stack([np.cos(angle), -np.sin(angle)], axis=1) * (1 << TWIDDLE_BITS)).astype(np.int64)
    mirrored = quarter_table[half // 2 - 1 :: -1] * np.array([-1, 1])  # W^(N/2−k) = −conj(W^k)
    twiddle_q30 = np.concatenate([quarter_table, mirrored]).astype(np.int32)

    # Radix-4 stages of the N/2-point FFT (after one radix-2 stage when log2(N/2) is odd): h = 1 or 2, ×4 each.
    first_radix2 = (half.bit_length() - 1) % 2 == 1
    stages, rows = [], []
    h = 2 if first_radix2 else 1
    while h < half:
        stages.append((h, len(rows)))
        for j in range(1, h):
            theta = 2.0 * np.pi * j * np.arange(1, 4) / (4 * h)
            rows.append(np.stack([np.cos(theta), -np.sin(theta)], axis=1))
        h *= 4
    fft_twiddle_q30 = np.round(np.array(rows).reshape(-1, 3, 2) * (1 << TWIDDLE_BITS)).astype(np.int32)

    bits = half.bit_length() - 1
    index = np.arange(half)
    reverse = np.zeros(half, dtype=np.int64)
    for b in range(bits):
        reverse |= ((index >> b) & 1) << (bits - 1 - b)

    first_bin, segment_bins, rise, gains, dense = mel_segments(cfg)

    # Σ p·w < 2^SPECTRUM_BITS · Σ w must fit in uint64 for the widest band (it does by a wide margin).
    widest = int(dense.sum(axis=0).max(initial=0))
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
        twiddle_q30=twiddle_q30,
        fft_twiddle_q30=fft_twiddle_q30,
        fft_stages=tuple(stages),
        fft_first_radix2=first_radix2,
        bit_reverse=reverse.astype(np.uint16),
        mel_first_bin=first_bin,
        mel_segment_n_bins=segment_bins,
        mel_rise_q15=rise,
        mel_weights_dense_q15=dense,
        mel_log2_gain_q16=gains,
        log2_table_q16=log2_table.astype(np.int32),
        log2_exponent_offset=exponent_offset,
        log_floor_q16=log_floor_q16,
        db_per_log2=db_per_log2,
        output_mult=tuple(mults),
        output_shift=tuple(shifts),
        norm_eps_q32=norm_eps_q32,
        norm_lambda_q16=norm_lambda_q16,
    )
