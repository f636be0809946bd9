"""Float64 reference front end: the features a model is trained on, and the yardstick of the integer path."""

from __future__ import annotations

import numpy as np

from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.integer import check_pcm, frames_of
from mcuasc.frontend.tables import float_mel_weights, float_window


class FloatFrontend:
    """Same framing, window, filterbank, log and Δ/ΔΔ as the integer path, in float64, without quantization."""

    def __init__(self, cfg: FrontendConfig):
        self.cfg = cfg
        self.window = float_window(cfg)
        self.mel_weights = float_mel_weights(cfg)

    def log_mel_db(self, pcm: np.ndarray) -> np.ndarray:
        """(clips, n_mels, stft frames) float64 dB, floored at log_floor_db."""
        cfg = self.cfg
        frames = frames_of(check_pcm(pcm, cfg), cfg) / 32768.0
        spectrum = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** cfg.power
        mel = spectrum @ self.mel_weights.T
        db_scale = 20.0 / cfg.power  # 10·log10 of power, 20·log10 of magnitude
        floor = 10.0 ** (cfg.log_floor_db / db_scale)
        return (db_scale * np.log10(np.maximum(mel, floor))).transpose(0, 2, 1)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        """float32 (n_mels, n_frames, channels); or a batch (clips, samples) → (clips, …)."""
        cfg = self.cfg
        batched = np.asarray(pcm).ndim == 2
        log = self.log_mel_db(pcm)
        if cfg.residual_norm:  # per band over the clip's frames, as the model's ResidualNorm on a 1-channel input
            centred = log - log.mean(axis=-1, keepdims=True)
            variance = (centred * centred).mean(axis=-1, keepdims=True)
            log = centred / np.sqrt(variance + cfg.residual_norm_eps_db2) + cfg.residual_norm_lambda * log
        channels = [log]
        if cfg.deltas:
            width = cfg.delta_width // 2
            denominator = 2 * sum(k * k for k in range(1, width + 1))

            def delta(v: np.ndarray) -> np.ndarray:
                n = v.shape[2] - 2 * width
                return sum(k * (v[..., width + k : width + k + n] - v[..., width - k : width - k + n]) for k in range(1, width + 1)) / denominator

            d1 = delta(log)
            d2 = delta(d1)
            crop = cfg.delta_context
            channels = [log[..., crop : crop + cfg.n_frames], d1[..., width : width + cfg.n_frames], d2]
        features = np.stack(channels, axis=-1).astype(np.float32)
        return features if batched else features[0]
