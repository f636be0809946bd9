"""Features computed once per (front-end config, implementation, set of clips) and reused across epochs."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcuasc.audio import fit_to_clip, read_wav
from mcuasc.data.tau import Clip
from mcuasc.frontend import FloatFrontend, FrontendConfig, IntegerFrontend

BATCH = 64


def load_pcm(clips: list[Clip], cfg: FrontendConfig) -> np.ndarray:
    """(clips, clip_samples) int16 at the front end's rate."""
    return np.stack([fit_to_clip(read_wav(c.path, cfg.sample_rate).samples, cfg.clip_samples)[0] for c in clips])


class FeatureCache:
    """Arrays are (n, channels, mels, frames), channels first for torch: float32 dB for impl="float", raw int8
    for impl="integer". Keyed by the config, the implementation and each clip's path, size and mtime."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.computed = 0  # clips computed (not loaded) by this instance: lets tests see the cache work

    def key(self, clips: list[Clip], cfg: FrontendConfig, impl: str) -> str:
        h = hashlib.sha256(cfg.to_json().encode() + impl.encode())
        for c in clips:
            stat = c.path.stat()
            h.update(json.dumps([str(c.path), stat.st_size, stat.st_mtime_ns]).encode())
        return h.hexdigest()[:24]

    def load_or_compute(self, clips: list[Clip], cfg: FrontendConfig, impl: str = "float",
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        path = self.directory / f"{cfg.name}-{impl}-{self.key(clips, cfg, impl)}.npy"
        if path.exists():
            return np.load(path)
        frontend = FloatFrontend(cfg) if impl == "float" else IntegerFrontend(cfg)
        parts = []
        for start in range(0, len(clips), BATCH):
            batch = clips[start : start + BATCH]
            parts.append(frontend(load_pcm(batch, cfg)).transpose(0, 3, 1, 2))
            self.computed += len(batch)
            if progress:
                progress(start + len(batch), len(clips))
        features = np.ascontiguousarray(np.concatenate(parts))
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".features-", suffix=".npy", dir=self.directory)
        with os.fdopen(fd, "wb") as f:
            np.save(f, features)
        os.replace(tmp, path)
        return features
