"""The boot self-test's data: one clip, and what the device must compute for it, taken from simulate."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuasc.audio import fit_to_clip, read_wav
from mcuasc.errors import InputError
from mcuasc.simulate import Deployment, Simulator
from mcuasc.testsignals import street_scene


@dataclass(frozen=True)
class SelfTest:
    pcm: np.ndarray  # int16, one clip at the front end's rate
    features_crc32: int  # zlib.crc32 of the int8 features (numpy == C)
    logits: np.ndarray  # int8 (TFLite reference kernels == TFLM)
    source: str
    seconds: float

    def to_dict(self) -> dict:
        return {"source": self.source, "seconds": self.seconds, "features_crc32": f"0x{self.features_crc32:08x}",
                "logits": self.logits.tolist()}


def make_self_test(deployment: Deployment, test_clip: str | Path | None = None) -> SelfTest:
    """Simulate the clip (a given WAV, or mcuasc's synthetic street scene) and keep its bit-exact results."""
    cfg = deployment.manifest.frontend
    seconds = cfg.clip_samples / cfg.sample_rate
    if test_clip is not None:
        pcm, _ = fit_to_clip(read_wav(test_clip, cfg.sample_rate).samples, cfg.clip_samples)
        source = Path(test_clip).name
    else:
        pcm = street_scene(seconds, cfg.sample_rate)
        source = "mcuasc's synthetic street scene"
    simulator = Simulator(deployment)
    window = simulator.run_pcm(pcm[None])[0]
    if not window.bit_exact:
        where = window.feature_divergence or window.operator_divergence
        raise InputError(f"the self-test clip ({source}) is not bit-exact in simulate ({where.describe() if where else 'logits differ'}); "
                         "pass another --test-clip.")
    features = simulator.numpy_frontend(pcm)
    return SelfTest(pcm, zlib.crc32(features.tobytes()), window.logits_tflm, source, seconds)
