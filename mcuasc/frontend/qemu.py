"""The rendered C front end on an emulated Cortex-M4 (MPS2 AN386 under QEMU): its features and its cost.

The harness (firmware_templates/mps2-an386/frontend_harness.c.j2) reads clips from the host over
semihosting, runs mcuasc_frontend_compute on each and writes the int8 features back with the timer ticks
each clip took; mcuasc.emulator turns ticks into instructions (-icount shift=0: one tick, 40 instructions).
A profiling build (profile=True) also charges each frame's stages (window, FFT with the normalising shift,
real split, spectrum + mel + log) separately; its marks cost a few dozen instructions a frame, so measure totals without it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuasc.emulator import INSTRUCTIONS_PER_TICK, build_elf, run_elf
from mcuasc.errors import ToolError
from mcuasc.frontend.c_source import render_frontend
from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.integer import check_pcm
from mcuasc.render import banner, render

STAGES = ("window", "fft", "split", "mel_log")  # MCUASC_FE_STAGE_* in mcuasc_frontend.h
CLIPS_FILE, FEATURES_FILE, TIMING_FILE = "clips.pcm", "features.int8", "timing.u32"
# Generous bounds for QEMU's wall time: start-up, then per million emulated instructions.
TIMEOUT_BASE_S, TIMEOUT_PER_MINSTR_S = 30.0, 1.0


@dataclass(frozen=True)
class EmulatedRun:
    features: np.ndarray  # (clips, mels, frames, channels) int8
    instructions: np.ndarray  # (clips,) int64: mcuasc_frontend_compute per clip, to ±40 (one timer tick)
    stage_instructions: dict[str, np.ndarray] | None  # profiling build: per stage, (clips,) int64

    @property
    def instructions_per_clip(self) -> float:
        return float(self.instructions.mean())


def harness_sources(cfg: FrontendConfig, frontend_sources: dict[str, str] | None = None) -> dict[str, str]:
    sources = dict(frontend_sources or render_frontend(cfg))
    sources["frontend_harness.c"] = render(
        "mps2-an386/frontend_harness.c.j2",
        banner=banner("mps2-an386 front-end harness"),
        clips_file=CLIPS_FILE,
        features_file=FEATURES_FILE,
        timing_file=TIMING_FILE,
    )
    return sources


class EmulatedFrontend:
    """The rendered C front end cross-compiled for the MPS2 AN386 and run under QEMU, called like IntegerFrontend."""

    def __init__(
        self,
        cfg: FrontendConfig,
        *,
        optimisation: str = "-O2",
        profile: bool = False,
        frontend_sources: dict[str, str] | None = None,
    ):
        self.cfg = cfg
        self.profile = profile
        flags = ("-DMCUASC_FE_PROFILE",) if profile else ()
        self.elf = build_elf(harness_sources(cfg, frontend_sources), optimisation=optimisation, extra_flags=flags,
                             name="frontend_harness")

    def run(self, pcm: np.ndarray, *, timeout: float | None = None) -> EmulatedRun:
        clips = check_pcm(pcm, self.cfg)
        n = clips.shape[0]
        if timeout is None:  # bcresnet is ~10 M instructions a clip; QEMU with -icount runs some 50-100 M/s
            timeout = TIMEOUT_BASE_S + TIMEOUT_PER_MINSTR_S * 30 * n
        with tempfile.TemporaryDirectory(prefix="mcuasc-qemu-") as tmp:
            work = Path(tmp)
            np.ascontiguousarray(clips, dtype="<i2").tofile(work / CLIPS_FILE)
            run_elf(self.elf, work, timeout=timeout)
            features = np.fromfile(work / FEATURES_FILE, dtype=np.int8)
            timing = np.fromfile(work / TIMING_FILE, dtype="<u4").astype(np.int64)
        expected = n * int(np.prod(self.cfg.shape))
        if features.size != expected or timing.size != n * (1 + len(STAGES)):
            raise ToolError(f"the emulated front end wrote {features.size} feature values and {timing.size} timing words "
                            f"for {n} clips, expected {expected} and {n * (1 + len(STAGES))}")
        timing = timing.reshape(n, 1 + len(STAGES)) * INSTRUCTIONS_PER_TICK
        stages = {name: timing[:, 1 + i] for i, name in enumerate(STAGES)} if self.profile else None
        return EmulatedRun(features.reshape(n, *self.cfg.shape), timing[:, 0], stages)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        features = self.run(pcm).features
        return features if np.asarray(pcm).ndim == 2 else features[0]
