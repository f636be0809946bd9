"""The integer front end in numpy: int16 PCM in, int8 features out, bit-for-bit what the C front end computes.

Every step is integer arithmetic on int64 arrays, vectorised over all frames of all clips at once; the C
twin (firmware_templates/common/frontend/mcuasc_frontend.c.j2) does the same operations frame by frame.
Right shifts of negative numbers are arithmetic (floor) here and in C (GCC; the C checks it at compile time).

Per frame, with N = n_fft, M = N/2:
1. window:     x[n] = pcm[n] · window_q15[n]                          |x| ≤ 2^30
2. normalise:  s = 28 − bitlen(max|x|); x <<= s (rounding >> if s < 0)  |x| < 2^28, block floating point
3. FFT:        z = x[even] + i·x[odd] in bit-reversed order; M-point decimation in time: when log2 M is odd one
               radix-2 stage y = (a ± b) >> 1, then radix-4 stages on the quarters x0..x3 of each group of 4h:
               with W = W_4h^j and the products b·W^p = ⌊(b·W_q30) / 2^32⌋ (one floor per component, = b·W^p/4),
               b1 = x1·W², b2 = x2·W, b3 = x3·W³, a = x0 >> 2: y0 = (a + b1) + (b2 + b3), y2 = (a + b1) − (b2 + b3),
               y1 = (a − b1) − i·(b2 − b3), y3 = (a − b1) + i·(b2 − b3). Each stage divides by its radix, so
               |z| never grows (< 2^28.5, components < 2^29) and the result is Z/M.
4. real split: X[k] = (A − i·W^k·B)/4, A = Z[k] + Z*[M−k], B = Z[k] − Z*[M−k], twiddles in Q30, one rounding
               per component: ⌊(A·2^30 + 2^31 − i·W_q30·B) / 2^32⌋. X = DFT(x)/N, |X| < 2^28.
5. spectrum:   power: with a = 31 − bitlen(max of v ^ (v >> 63) over the frame's components), so X·2^a fits in
               32 bits, p = ((Xr·2^a)² + (Xi·2^a)²) >> 23 < 2^40 (the sum is one 64-bit multiply-accumulate on
               the Cortex-M4; bins 110 dB below the frame's peak keep 3 significant bits), i.e. the power shifted
               by sp = 23 − 2a; magnitude: p = isqrt(Xr² + Xi²) < 2^30, sp = 0.
6. mel:        mel[m] = Σ p[k] · weight (uint64, exact): weights are the triangles' rising edges r and 1 − r
               (tables.py), so each bin feeds at most two bands.
7. log:        L = log2(mel)·2^16 (bit length + 128-entry table, linear interpolation) + gain[m]
               − (exponent_offset + p·s − sp)·2^16, floored at log_floor_q16. L is log2 of the float
               reference's mel energy, in Q16.
8. Δ, ΔΔ:      HTK regression sums Σ k·(L[t+k] − L[t−k]) without the division (folded into the multiplier).
9. int8:       q = ((v · mult + 2^(shift−1)) >> shift) + zero_point, saturated.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse

from mcuasc.errors import InputError
from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.tables import LOG2_TABLE_BITS, NORMALISED_BITS, SPECTRUM_BITS, TWIDDLE_BITS, build_tables


def bit_length(x: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64/uint64 values below 2^63 (0 → 0): the exponent of their float64,
    one too big when the conversion rounded up to a power of two (only possible from 2^53 on), then corrected."""
    x = np.asarray(x).astype(np.uint64)
    length = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    rounded_up = (x >> np.maximum(length - 1, 0).astype(np.uint64)) == 0
    return length - (rounded_up & (x != 0))


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


def radix4_stage(
    zr: np.ndarray, zi: np.ndarray, wr: np.ndarray | None, wi: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """One radix-4 DIT stage (step 3) on (groups, 4, h, frames) int64 re/im, with (W, W², W³) as (3, h, 1) Q30
    (None for h = 1, where W = 1 and every product is x >> 2).

    Frames are the last axis, so every operation runs over long contiguous rows (h·frames values)."""
    x0r, x1r, x2r, x3r = zr[:, 0], zr[:, 1], zr[:, 2], zr[:, 3]
    x0i, x1i, x2i, x3i = zi[:, 0], zi[:, 1], zi[:, 2], zi[:, 3]
    if wr is None or wi is None:
        b1r, b1i, b2r, b2i, b3r, b3i = x1r >> 2, x1i >> 2, x2r >> 2, x2i >> 2, x3r >> 2, x3i >> 2
    else:  # b·W^p / 4 with one floor per component: x1 takes W², x2 W, x3 W³.
        b1r, b1i = (x1r * wr[1] - x1i * wi[1]) >> 32, (x1r * wi[1] + x1i * wr[1]) >> 32
        b2r, b2i = (x2r * wr[0] - x2i * wi[0]) >> 32, (x2r * wi[0] + x2i * wr[0]) >> 32
        b3r, b3i = (x3r * wr[2] - x3i * wi[2]) >> 32, (x3r * wi[2] + x3i * wr[2]) >> 32
    ar, ai = x0r >> 2, x0i >> 2
    sr, si, dr, di = ar + b1r, ai + b1i, ar - b1r, ai - b1i
    ur, ui, vr, vi = b2r + b3r, b2i + b3i, b2r - b3r, b2i - b3i
    yr, yi = np.empty_like(zr), np.empty_like(zi)
    np.add(sr, ur, out=yr[:, 0])
    np.add(si, ui, out=yi[:, 0])
    np.add(dr, vi, out=yr[:, 1])  # y1 = d − i·v
    np.subtract(di, vr, out=yi[:, 1])
    np.subtract(sr, ur, out=yr[:, 2])
    np.subtract(si, ui, out=yi[:, 2])
    np.subtract(dr, vi, out=yr[:, 3])  # y3 = d + i·v
    np.add(di, vr, out=yi[:, 3])
    return yr, yi


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


CHUNK_FRAMES = 64  # frames computed together: enough to vectorise, few enough to stay in cache


class IntegerFrontend:
    """The integer log-mel front end; create once per config, call on int16 clips."""

    def __init__(self, cfg: FrontendConfig):
        self.cfg = cfg
        t = self.tables = build_tables(cfg)
        # int64 copies of the tables, made once.
        self._window = t.window_q15[t.window_start : t.window_stop].astype(np.int64)
        self._twiddle_r = t.twiddle_q30[:, :1].astype(np.int64)  # columns: they broadcast over frames
        self._twiddle_i = t.twiddle_q30[:, 1:].astype(np.int64)
        # Each radix-4 stage's (W, W², W³) for j = 0..h−1, as (3, h, 1) arrays that broadcast over (groups, h, frames).
        one = np.array([[[1 << TWIDDLE_BITS, 0]] * 3])
        self._stage_twiddles: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
        for h, row in t.fft_stages:
            w = np.concatenate([one, t.fft_twiddle_q30[row : row + h - 1].astype(np.int64)])  # (h, 3, 2)
            if h == 1:  # W = 1: no products
                self._stage_twiddles.append((h, None, None))
            else:
                self._stage_twiddles.append((h, w[:, :, 0].T[:, :, None].copy(), w[:, :, 1].T[:, :, None].copy()))
        width = t.window_stop - t.window_start
        sample = 2 * t.bit_reverse.astype(np.int64) - t.window_start  # x index of complex input j's real part
        self._gather_real = np.where((sample >= 0) & (sample < width), sample, width)
        self._gather_imag = np.where((sample + 1 >= 0) & (sample + 1 < width), sample + 1, width)
        self._mel_weights_sparse = scipy.sparse.csr_matrix(t.mel_weights_dense_q15.T.astype(np.int64))

    # -- steps 1–7 -------------------------------------------------------------------------------------
    def log_mel_q16(self, pcm: np.ndarray) -> np.ndarray:
        """(clips, stft frames, n_mels) int64: log2 of mel energy in Q16, floored (step 7).

        Clips are processed in groups of about CHUNK_FRAMES frames, so the working set stays in cache, and
        the groups spread over the cores (numpy releases the GIL inside its loops).
        """
        cfg = self.cfg
        pcm = check_pcm(pcm, cfg)
        per_chunk = max(1, CHUNK_FRAMES // cfg.n_stft_frames)
        groups = [pcm[i : i + per_chunk] for i in range(0, pcm.shape[0], per_chunk)]
        if len(groups) == 1:
            parts = [self._log_mel_chunk(groups[0])]
        else:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                parts = list(pool.map(self._log_mel_chunk, groups))
        return np.concatenate(parts).reshape(pcm.shape[0], cfg.n_stft_frames, cfg.n_mels)

    def _log_mel_chunk(self, pcm: np.ndarray) -> np.ndarray:
        cfg, t = self.cfg, self.tables
        x = frames_of(pcm, cfg)[:, :, t.window_start : t.window_stop].reshape(-1, t.window_stop - t.window_start)
        x = x * self._window
        peak = np.abs(x).max(axis=1)
        silent = peak == 0
        shift = np.where(silent, 0, NORMALISED_BITS - bit_length(peak))
        if shift.min() >= 0:
            x <<= shift[:, None]
        else:  # a frame near full scale: shift down with rounding
            up, down = np.maximum(shift, 0)[:, None], np.maximum(-shift, 0)[:, None]
            x = np.where(up > 0, x << up, (x + ((1 << down) >> 1)) >> down)

        re, im = self._real_fft(x)  # (bins, frames) from here on
        if cfg.power == 2:
            # v ^ (v >> 63) is |v| or |v| − 1: the bit length of their maximum bounds every component.
            peak = np.maximum((re ^ (re >> 63)).max(axis=0), (im ^ (im >> 63)).max(axis=0))
            scale = 31 - bit_length(peak)
            re <<= scale
            im <<= scale
            spectrum = re * re
            spectrum += im * im
            spectrum >>= 63 - SPECTRUM_BITS
            power_shift = 63 - SPECTRUM_BITS - 2 * scale
        else:
            spectrum = re * re
            spectrum += im * im
            spectrum = isqrt(spectrum)
            power_shift = np.zeros_like(shift)

        # Σ p·w exactly, in int64: a sparse product over the few non-zero weights (tables.py bounds the sums).
        mel = self._mel_weights_sparse @ spectrum
        log = log2_q16(np.maximum(mel, 1), t.log2_table_q16) + t.mel_log2_gain_q16.astype(np.int64)[:, None]
        log -= (t.log2_exponent_offset + cfg.power * shift - power_shift) * 65536
        return np.where((mel == 0) | silent, t.log_floor_q16, np.maximum(log, t.log_floor_q16)).T

    def _real_fft(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled real FFT (steps 3–4) of the windowed samples [window_start, window_stop) of each frame
        (zero elsewhere): int64 (frames, width) → re, im (N/2 + 1, frames), equal to DFT/N. Frames are the
        last axis, so that every numpy operation runs over long rows."""
        half = self.cfg.n_fft // 2
        frames, width = x.shape
        # Even samples are the real parts, odd the imaginary, in bit-reversed order; row `width` reads 0.
        with_zero = np.zeros((width + 1, frames), dtype=np.int64)
        with_zero[:width] = x.T
        zr, zi = with_zero[self._gather_real], with_zero[self._gather_imag]
        if self.tables.fft_first_radix2:  # y = (a ± b) >> 1 on neighbouring pairs
            zr, zi = zr.reshape(half // 2, 2, frames), zi.reshape(half // 2, 2, frames)
            zr = np.stack([zr[:, 0] + zr[:, 1], zr[:, 0] - zr[:, 1]], axis=1) >> 1
            zi = np.stack([zi[:, 0] + zi[:, 1], zi[:, 0] - zi[:, 1]], axis=1) >> 1
        for h, wr, wi in self._stage_twiddles:
            shape = (half // (4 * h), 4, h, frames)
            zr, zi = radix4_stage(zr.reshape(shape), zi.reshape(shape), wr, wi)
        zr, zi = zr.reshape(half, frames), zi.reshape(half, frames)

        # Z[k] and Z[(M − k) mod M] for k = 0..M, by slicing (Z[M] is Z[0]).
        zk_r, zk_i = np.concatenate([zr, zr[:1]]), np.concatenate([zi, zi[:1]])
        zm_r, zm_i = zk_r[::-1], zk_i[::-1]
        ar, ai = zk_r + zm_r, zk_i - zm_i  # A = Z[k] + conj(Z[M−k])
        br, bi = zk_r - zm_r, zk_i + zm_i  # B = Z[k] − conj(Z[M−k])
        c, s = self._twiddle_r, self._twiddle_i
        rounding = 1 << 31
        re = ((ar << TWIDDLE_BITS) + c * bi + s * br + rounding) >> 32
        im = ((ai << TWIDDLE_BITS) - c * br + s * bi + rounding) >> 32
        return re, im

    # -- steps 8–9 -------------------------------------------------------------------------------------
    def residual_norm_q16(self, log: np.ndarray) -> np.ndarray:
        """λ·x + (x − mean)/σ per band over the clip's frames, in Q16 of the output's units (dB-like).

        Q16 log2 in, all integer: mean = ⌊(Σx + T/2)/T⌋; var = ⌊(Σd² + T/2)/T⌋ in Q32 with d = x − mean;
        σ = ⌊√(var + eps)⌋ in Q16; 1/σ as ⌊2^32/σ⌋; the two terms each rounded from Q32 to Q16.
        """
        t = self.tables
        frames = log.shape[1]
        total = log.sum(axis=1, keepdims=True)
        mean = (total + (frames >> 1)) // frames
        centred = log - mean
        variance = ((centred * centred).sum(axis=1, keepdims=True) + (frames >> 1)) // frames
        inverse_sigma = (1 << 32) // isqrt(variance + t.norm_eps_q32)
        half = 1 << 15
        return ((centred * inverse_sigma + half) >> 16) + ((log * t.norm_lambda_q16 + half) >> 16)

    def channels_q16(self, log: np.ndarray) -> list[np.ndarray]:
        """Log-mel (residual-normalised when configured), and with deltas Δ and ΔΔ regression sums, each
        (clips, n_frames, n_mels) int64."""
        cfg = self.cfg
        if cfg.residual_norm:
            return [self.residual_norm_q16(log)]
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
