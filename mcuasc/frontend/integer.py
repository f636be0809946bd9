"""The integer front end in numpy: int16 PCM in, int8 features out, bit-for-bit what the C front end computes.

Every step is integer arithmetic on int64 arrays, vectorised over all frames of all clips at once; the C
twin (firmware_templates/common/frontend/mcuasc_frontend.c.j2) does the same operations frame by frame.
Right shifts of negative numbers are arithmetic (floor) here and in C (GCC; the C checks it at compile time).

Per frame, with N = n_fft, M = N/2:
1. window:     x[n] = pcm[n] · window_q15[n]                          |x| ≤ 2^30
2. normalise:  s = 29 − bitlen(max|x|); x <<= s (rounding >> if s < 0)  |x| < 2^29, block floating point
3. FFT:        z = x[even] + i·x[odd]; M-point radix-2 DIT, every butterfly halves with one rounding:
               (a ± b·w)/2 = (a·2^31 ± b·w_q31 + 2^31) >> 32, so |z| never grows and the result is Z/M.
4. real split: X[k] = (A − i·W^k·B)/4, A = Z[k] + Z*[M−k], B = Z[k] − Z*[M−k]; X = DFT(x)/N, |X| < 2^29.
5. spectrum:   power: p = (Xr² + Xi²) >> sp, sp chosen per frame so p < 2^40 (bins 110 dB below the frame's
               peak keep 3 significant bits); magnitude: p = isqrt(Xr² + Xi²) < 2^30.
6. mel:        mel[m] = Σ p[k] · mel_weights_q15 (uint64, exact: tables.py checks no band can overflow).
7. log:        L = log2(mel)·2^16 (bit length + 128-entry table, linear interpolation) + gain[m]
               − (exponent_offset + p·s − sp)·2^16, floored at log_floor_q16. L is log2 of the float
               reference's mel energy, in Q16.
8. Δ, ΔΔ:      HTK regression sums Σ k·(L[t+k] − L[t−k]) without the division (folded into the multiplier).
9. int8:       q = ((v · mult + 2^(shift−1)) >> shift) + zero_point, saturated.
"""

from __future__ import annotations

import numpy as np

from mcuasc.errors import InputError
from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.tables import LOG2_TABLE_BITS, NORMALISED_BITS, SPECTRUM_BITS, FrontendTables, build_tables


def bit_length(x: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64/uint64 values (0 → 0), by binary search on shifts."""
    x = x.astype(np.uint64)
    length = np.zeros(x.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = (x >> np.uint64(step)) != 0
        x = np.where(big, x >> np.uint64(step), x)
        length += big * step
    return length + (x != 0)


def isqrt(x: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(x)) of int64 values below 2^62 (float estimate, then integer correction)."""
    root = np.sqrt(x.astype(np.float64)).astype(np.int64)
    for _ in range(2):
        root -= root * root > x
        root += (root + 1) * (root + 1) <= x
    return root


def log2_q16(x: np.ndarray, log2_table_q16: np.ndarray) -> np.ndarray:
    """log2(x)·2^16 for positive uint64 values, as the C front end computes it (x = 0 gives garbage: mask it)."""
    exponent = bit_length(x) - 1
    x = x.astype(np.uint64)
    # Mantissa m in [2^30, 2^31): truncate big values, shift small ones up.
    down = np.maximum(exponent - 30, 0).astype(np.uint64)
    up = np.maximum(30 - exponent, 0).astype(np.uint64)
    mantissa = ((x >> down) << up).astype(np.int64)
    fraction = mantissa - (1 << 30)
    index = fraction >> (30 - LOG2_TABLE_BITS)
    remainder = (fraction >> (30 - LOG2_TABLE_BITS - 16)) & 0xFFFF
    base = log2_table_q16[index].astype(np.int64)
    slope = log2_table_q16[np.minimum(index + 1, len(log2_table_q16) - 1)].astype(np.int64) - base
    return exponent * 65536 + base + ((slope * remainder + 32768) >> 16)


def frames_of(pcm: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Centred framing of (clips, samples) int16 → (clips, frames, n_fft) int64, zero padding at both ends."""
    clips = pcm.shape[0]
    padded = np.zeros((clips, cfg.clip_samples + cfg.n_fft), dtype=np.int64)
    padded[:, cfg.n_fft // 2 : cfg.n_fft // 2 + cfg.clip_samples] = pcm
    view = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft, axis=1)
    return view[:, :: cfg.hop_length][:, : cfg.n_stft_frames]


def check_pcm(pcm: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(samples,) or (clips, samples) int16 of exactly one clip each → (clips, samples)."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise InputError(f"the integer front end takes int16 PCM, got {pcm.dtype}; read audio with mcuasc.audio.")
    if pcm.ndim == 1:
        pcm = pcm[None]
    if pcm.ndim != 2 or pcm.shape[1] != cfg.clip_samples:
        raise InputError(
            f"the front end takes clips of {cfg.clip_samples} samples, got shape {pcm.shape}; "
            "fit the audio with mcuasc.audio.fit_to_clip first."
        )
    return pcm


class IntegerFrontend:
    """The integer log-mel front end; create once per config, call on int16 clips."""

    def __init__(self, cfg: FrontendConfig):
        self.cfg = cfg
        self.tables: FrontendTables = build_tables(cfg)

    # -- steps 1–7 -------------------------------------------------------------------------------------
    def log_mel_q16(self, pcm: np.ndarray) -> np.ndarray:
        """(clips, stft frames, n_mels) int64: log2 of mel energy in Q16, floored (step 7)."""
        cfg, t = self.cfg, self.tables
        pcm = check_pcm(pcm, cfg)
        clips = pcm.shape[0]
        frames = frames_of(pcm, cfg).reshape(-1, cfg.n_fft)
        x = frames[:, t.window_start : t.window_stop] * t.window_q15[t.window_start : t.window_stop].astype(np.int64)
        shift = NORMALISED_BITS - bit_length(np.abs(x).max(axis=1))
        silent = shift > NORMALISED_BITS - 1  # max |x| = 0
        shift = np.where(silent, 0, shift)[:, None]
        up = np.maximum(shift, 0)
        down = np.maximum(-shift, 0)
        x = np.where(shift >= 0, x << up, (x + ((1 << down) >> 1)) >> down)
        full = np.zeros((x.shape[0], cfg.n_fft), dtype=np.int64)
        full[:, t.window_start : t.window_stop] = x

        re, im = self._real_fft(full)
        squares = re * re + im * im
        if cfg.power == 2:
            peak = np.maximum(np.abs(re).max(axis=1), np.abs(im).max(axis=1))
            power_shift = np.maximum(2 * bit_length(peak) + 1 - SPECTRUM_BITS, 0)[:, None]
            spectrum = squares >> power_shift
        else:
            power_shift = np.zeros((x.shape[0], 1), dtype=np.int64)
            spectrum = isqrt(squares)

        mel = self._mel(spectrum)
        log = log2_q16(np.maximum(mel, 1), t.log2_table_q16) + t.mel_log2_gain_q16.astype(np.int64)
        log -= (t.log2_exponent_offset + cfg.power * shift - power_shift) * 65536
        log = np.where((mel == 0) | silent[:, None], t.log_floor_q16, np.maximum(log, t.log_floor_q16))
        return log.reshape(clips, cfg.n_stft_frames, cfg.n_mels)

    def _real_fft(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled real FFT (steps 3–4): int64 (frames, N) → re, im (frames, N/2 + 1), equal to DFT/N."""
        t = self.tables
        half = self.cfg.n_fft // 2
        frames = x.shape[0]
        zr = x[:, 0::2][:, t.bit_reverse]
        zi = x[:, 1::2][:, t.bit_reverse]
        wr_all = t.twiddle_q31[:, 0].astype(np.int64)
        wi_all = t.twiddle_q31[:, 1].astype(np.int64)
        h = 1
        while h < half:
            # W_{2h}^j = W_N^{j·N/(2h)}: every (N/2h)-th entry of the table.
            wr = wr_all[: 2 * half : half // h][:h]
            wi = wi_all[: 2 * half : half // h][:h]
            zr = zr.reshape(frames, half // (2 * h), 2, h)
            zi = zi.reshape(frames, half // (2 * h), 2, h)
            ar, br = zr[:, :, 0], zr[:, :, 1]
            ai, bi = zi[:, :, 0], zi[:, :, 1]
            tr = br * wr - bi * wi
            ti = br * wi + bi * wr
            ar31, ai31 = ar << 31, ai << 31
            rounding = 1 << 31
            zr = np.stack([(ar31 + tr + rounding) >> 32, (ar31 - tr + rounding) >> 32], axis=2)
            zi = np.stack([(ai31 + ti + rounding) >> 32, (ai31 - ti + rounding) >> 32], axis=2)
            h *= 2
        zr = zr.reshape(frames, half)
        zi = zi.reshape(frames, half)

        k = np.arange(half + 1)
        zk_r, zk_i = zr[:, k % half], zi[:, k % half]
        zm_r, zm_i = zr[:, (half - k) % half], zi[:, (half - k) % half]
        ar, ai = zk_r + zm_r, zk_i - zm_i  # A = Z[k] + conj(Z[M−k])
        br, bi = zk_r - zm_r, zk_i + zm_i  # B = Z[k] − conj(Z[M−k])
        c = t.twiddle_q31[:, 0].astype(np.int64)
        s = t.twiddle_q31[:, 1].astype(np.int64)
        rounding = 1 << 32
        re = ((ar << 31) + c * bi + s * br + rounding) >> 33
        im = ((ai << 31) - c * br + s * bi + rounding) >> 33
        return re, im

    def _mel(self, spectrum: np.ndarray) -> np.ndarray:
        """Exact Σ p·w in uint64, via float64 BLAS products of 16-bit limbs (every partial sum < 2^53)."""
        weights = self.tables.mel_weights_dense_q15
        mel = np.zeros((spectrum.shape[0], weights.shape[1]), dtype=np.uint64)
        for limb in range(0, SPECTRUM_BITS, 16):
            part = ((spectrum >> limb) & 0xFFFF).astype(np.float64) @ weights
            mel += part.astype(np.uint64) << np.uint64(limb)
        return mel

    # -- steps 8–9 -------------------------------------------------------------------------------------
    def channels_q16(self, log: np.ndarray) -> list[np.ndarray]:
        """Log-mel, and with deltas Δ and ΔΔ regression sums, each (clips, n_frames, n_mels) int64."""
        cfg = self.cfg
        if not cfg.deltas:
            return [log]
        width = cfg.delta_width // 2

        def regression(v: np.ndarray) -> np.ndarray:
            frames = v.shape[1] - 2 * width
            return sum(k * (v[:, width + k : width + k + frames] - v[:, width - k : width - k + frames]) for k in range(1, width + 1))

        delta = regression(log)
        delta2 = regression(delta)
        crop = cfg.delta_context
        return [log[:, crop : crop + cfg.n_frames], delta[:, width : width + cfg.n_frames], delta2]

    def quantize(self, channels: list[np.ndarray]) -> np.ndarray:
        """int8 features (clips, n_mels, n_frames, channels)."""
        t = self.tables
        out = []
        for value, mult, shift in zip(channels, t.output_mult, t.output_shift):
            q = ((value * mult + (1 << (shift - 1))) >> shift) + self.cfg.output_zero_point
            out.append(np.clip(q, -128, 127).astype(np.int8))
        return np.stack(out, axis=-1).transpose(0, 2, 1, 3)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        """int16 (samples,) → int8 (n_mels, n_frames, channels); or a batch (clips, samples) → (clips, …)."""
        batched = np.asarray(pcm).ndim == 2
        features = self.quantize(self.channels_q16(self.log_mel_q16(pcm)))
        return features if batched else features[0]

    def log_mel_db(self, pcm: np.ndarray) -> np.ndarray:
        """The log-mel channel in dB before int8 quantization, (clips, n_mels, stft frames) float64."""
        return self.log_mel_q16(pcm).transpose(0, 2, 1) * (self.tables.db_per_log2 / 65536)
