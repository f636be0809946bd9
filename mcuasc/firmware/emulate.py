"""The generated mps2-an386 firmware, built against a user's TFLM tree and run under qemu-system-arm: its self-test,
and its logits on clips against simulate's, with instructions per stage.

TFLM's sources are never part of mcuasc: the tree comes from --tflm-dir or MCUASC_TFLM_DIR, and without one this
stage cannot run (the tests that need it say so and skip).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuasc.audio import fit_to_clip, read_wav
from mcuasc.emulator import run_elf
from mcuasc.errors import InputError, ToolError
from mcuasc.firmware.generate import read_description
from mcuasc.simulate import Deployment, Simulator, load_deployment

KERNELS = ("cmsis_nn", "reference")
RESULT_LINE = re.compile(r"scene (\w+) \| int8 logits ([-\d,]+) \| front end (\d+) (\w+), model (\d+) \w+")
ARENA_LINE = re.compile(r"arena (\d+) of (\d+) bytes used")


def tflm_dir_from(value: str | Path | None) -> Path:
    """--tflm-dir, else $MCUASC_TFLM_DIR; an InputError says what is missing."""
    text = str(value) if value is not None else os.environ.get("MCUASC_TFLM_DIR", "")
    if not text:
        raise InputError("no TFLM source tree given; pass --tflm-dir DIR or set MCUASC_TFLM_DIR (a tflite-micro checkout "
                         "with its third-party downloads).")
    path = Path(text)
    if not (path / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise InputError(f"{path} is not a TFLM source tree (no tensorflow/lite/micro/micro_interpreter.h); "
                         "pass the root of a tflite-micro checkout.")
    return path


@dataclass(frozen=True)
class DeviceResult:
    label: str
    logits: tuple[int, ...]
    frontend_instructions: int
    model_instructions: int


@dataclass(frozen=True)
class EmulationReport:
    kernels: str
    self_test_passed: bool
    arena_used_bytes: int | None
    self_test: DeviceResult | None
    clips: tuple[DeviceResult, ...]
    expected_clip_logits: tuple[tuple[int, ...], ...]  # simulate's TFLM logits for the same clips
    output: str = field(repr=False)

    @property
    def clips_match_simulate(self) -> bool:
        return tuple(c.logits for c in self.clips) == self.expected_clip_logits


def firmware_deployment(firmware_dir: str | Path) -> tuple[dict, Deployment]:
    """The description of an mps2-an386 folder gen-firmware wrote, and the deployment it was generated from."""
    firmware_dir = Path(firmware_dir)
    description = read_description(firmware_dir)
    if description is None:
        raise InputError(f"{firmware_dir} is not a folder mcuasc gen-firmware wrote; pass one (--board mps2-an386).")
    if description.get("board") != "mps2-an386":
        raise InputError(f"{firmware_dir} is firmware for {description.get('board')}; only mps2-an386 runs under QEMU. "
                         "Generate it with mcuasc gen-firmware --board mps2-an386.")
    manifest = firmware_dir / (description.get("manifest_path") or description["manifest"])
    if not manifest.is_file():
        raise InputError(f"the manifest {manifest} the firmware was generated from is gone; regenerate the firmware.")
    return description, load_deployment(manifest=manifest)


def read_clips(deployment: Deployment, paths: list[str | Path]) -> np.ndarray:
    """(clips, clip_samples) int16 from WAV files, at the deployed front end's rate and clip length."""
    cfg = deployment.manifest.frontend
    return np.stack([fit_to_clip(read_wav(path, cfg.sample_rate).samples, cfg.clip_samples)[0] for path in paths])


def build_firmware(firmware_dir: Path, tflm_dir: Path, kernels: str = "cmsis_nn", jobs: int = 2,
                   tflm_lib: Path | None = None) -> Path:
    """make in the firmware folder (objects under build/<kernels>/), compiling TFLM or linking tflm_lib, a libtflm.a
    built for the board's CPU with the given kernels; returns the ELF."""
    if kernels not in KERNELS:
        raise InputError(f"unknown kernels {kernels!r}; choose {' or '.join(KERNELS)}.")
    if shutil.which("make") is None:
        raise ToolError("'make' is not installed; install it with 'apt-get install make'.")
    build = f"build/{kernels}" + ("-lib" if tflm_lib else "")
    command = ["make", "-C", str(firmware_dir), f"-j{jobs}", f"TFLM_DIR={tflm_dir.resolve()}", f"KERNELS={kernels}",
               f"BUILD={build}"]
    if tflm_lib is not None:
        if not Path(tflm_lib).is_file():
            raise InputError(f"TFLM library {tflm_lib} does not exist; pass a libtflm.a built for the Cortex-M4.")
        command.append(f"TFLM_LIB={Path(tflm_lib).resolve()}")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ToolError(f"building the firmware in {firmware_dir} against {tflm_dir} failed:\n{tail}")
    return (firmware_dir / build / "firmware.elf").resolve()  # QEMU runs in a temporary folder


def _parse(output: str) -> tuple[list[DeviceResult], int | None]:
    results = [DeviceResult(m.group(1), tuple(int(v) for v in m.group(2).split(",")), int(m.group(3)), int(m.group(5)))
               for m in RESULT_LINE.finditer(output)]
    arena = ARENA_LINE.search(output)
    return results, int(arena.group(1)) if arena else None


def emulate(firmware_dir: str | Path, *, tflm_dir: str | Path | None = None, kernels: str = "cmsis_nn",
            tflm_lib: str | Path | None = None, pcm_clips: np.ndarray | None = None, timeout: float = 600.0) -> EmulationReport:
    """Build the firmware against TFLM, run it under QEMU with pcm_clips (clips, clip_samples) as audio.pcm, and
    simulate the same clips on the host for the logits the device must give."""
    firmware_dir = Path(firmware_dir)
    _, deployment = firmware_deployment(firmware_dir)
    tree = tflm_dir_from(tflm_dir)
    elf = build_firmware(firmware_dir, tree, kernels, tflm_lib=Path(tflm_lib) if tflm_lib else None)
    expected: list[tuple[int, ...]] = []
    with tempfile.TemporaryDirectory(prefix="mcuasc-emulate-") as tmp:
        if pcm_clips is not None and len(pcm_clips):
            np.ascontiguousarray(pcm_clips, dtype="<i2").tofile(Path(tmp) / "audio.pcm")
            simulator = Simulator(deployment)
            expected = [tuple(int(v) for v in w.logits_tflm) for w in simulator.run_pcm(np.asarray(pcm_clips, np.int16))]
        try:
            output = run_elf(elf, Path(tmp), timeout=timeout)
            passed = True
        except ToolError as exc:  # exit 1: the self-test failed; the output still says how
            output, passed = str(exc), False
    results, arena = _parse(output)
    passed = passed and "self-test PASS" in output
    return EmulationReport(kernels, passed, arena, results[0] if results else None, tuple(results[1:]), tuple(expected), output)
