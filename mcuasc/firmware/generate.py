"""Stage 4, gen-firmware: a TFLM C++ project for a board, rendered from firmware_templates/ and the manifest.

Everything the project holds comes from earlier stages: the flatbuffer and its ops, the measured arena, the front end
exactly as simulate compiles it, the labels, and the self-test's expected results from simulate. Budgets and the
microphone's sample rate are checked before anything is written; the output is byte-identical for the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcuasc import __version__
from mcuasc.boards import Board, load_board
from mcuasc.errors import InputError
from mcuasc.firmware.budget import ARENA_MARGIN_BYTES, MAIN_STACK_BYTES, Budget, firmware_budget
from mcuasc.firmware.ops import resolver_methods
from mcuasc.firmware.selftest import SelfTest, make_self_test
from mcuasc.render import banner, render
from mcuasc.simulate import Deployment, load_deployment
from mcuasc.toolchain import compile_objects, section_sizes

DESCRIPTION_FILE = "mcuasc-firmware.json"
FORMAT = "mcuasc.firmware/1"
FRONTEND_DIR = "src/frontend"
# Zephyr DMIC capture: blocks of this length, this many queued while the main thread classifies.
CAPTURE_BLOCK_MS = 100
CAPTURE_BLOCKS = 4

FILE_ROLES = {
    "src/model_data.cc": "the int8 flatbuffer as a 16-byte aligned const array (flash)",
    "src/model_data.h": "its declaration and size",
    "src/model_ops.h": "MicroMutableOpResolver registering exactly the model's ops",
    "src/model_runner.cc": "the TFLM interpreter in a static arena, behind a C interface",
    "src/model_runner.h": "that interface, with the arena and tensor sizes",
    "src/mcuasc_app.c": "board-neutral application: clip → features → model → scene; the self-test",
    "src/mcuasc_app.h": "its interface",
    "src/mcuasc_platform.h": "what the board provides: console and cycle counter",
    "src/self_test_data.c": "the self-test clip's PCM and the expected int8 logits",
    "src/self_test_data.h": "the expected features CRC-32",
    f"{FRONTEND_DIR}/mcuasc_frontend.c": "the integer front end, exactly as mcuasc simulate compiles it",
    f"{FRONTEND_DIR}/mcuasc_frontend.h": "its configuration and interface",
    f"{FRONTEND_DIR}/mcuasc_frontend_tables.c": "its tables (window, twiddles, mel weights, log2)",
    f"{FRONTEND_DIR}/mcuasc_frontend_tables.h": "their declarations",
}
BOARD_FILE_ROLES = {
    "zephyr": {
        "src/main.cc": "Zephyr application: DMIC capture with double buffering, self-test, classification loop",
        "CMakeLists.txt": "Zephyr build",
        "prj.conf": "Kconfig: C++17, TFLM with CMSIS-NN kernels, DMIC",
        "app.overlay": "devicetree: the PDM microphone's pins",
    },
    "make": {
        "src/main.c": "bare-metal application: self-test, then the clips of audio.pcm over semihosting",
        "Makefile": "builds build/firmware.elf from this folder and a TFLM tree (TFLM_DIR, KERNELS=cmsis_nn|reference)",
        "board/startup.c": "vector table and reset handler (data, bss, FPU, C++ constructors)",
        "board/semihosting.c": "semihosting calls: console and host files",
        "board/mps2_an386.h": "CMSDK timer 0 (instruction counting under QEMU -icount) and semihosting",
        "board/mps2_an386.ld": "linker script for QEMU's AN386 memory map",
    },
}
# C/C++ sources that include neither TFLM nor the board's SDK: CI cross-compiles them.
PORTABLE_SOURCES = ("src/model_data.cc", "src/mcuasc_app.c", "src/self_test_data.c",
                    f"{FRONTEND_DIR}/mcuasc_frontend.c", f"{FRONTEND_DIR}/mcuasc_frontend_tables.c",
                    "src/main.c", "board/startup.c", "board/semihosting.c")  # the last three: bare-metal boards


@dataclass(frozen=True)
class FirmwareProject:
    """A rendered project, not yet written: file name → text, and what it was checked against."""

    board: Board
    deployment: Deployment
    files: dict[str, str]
    budget: Budget
    self_test: SelfTest
    refusals: tuple[str, ...]  # reasons the board cannot run it; empty when it can

    def description(self, out_dir: Path | None = None) -> dict:
        """What the folder holds; with out_dir, also where the manifest is relative to it (for mcuasc emulate)."""
        manifest = self.deployment.manifest_path
        return {
            "format": FORMAT, "mcuasc": __version__, "board": self.board.name, "manifest": manifest.name,
            "manifest_path": None if out_dir is None else os.path.relpath(manifest.resolve(), out_dir.resolve()),
            "model_sha256": hashlib.sha256(self.deployment.flatbuffer).hexdigest(),
            "sample_rate": self.deployment.manifest.frontend.sample_rate,
            "arena_bytes": self.deployment.manifest.tflm_arena_bytes + ARENA_MARGIN_BYTES,
            "budget": self.budget.to_dict(), "self_test": self.self_test.to_dict(), "refusals": list(self.refusals),
            "files": {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sorted(self.files.items())},
        }


class FirmwareRefused(InputError):
    """The board cannot run the model; carries the rendered project so its budget can be shown."""

    def __init__(self, message: str, project: FirmwareProject):
        super().__init__(message)
        self.project = project


@dataclass(frozen=True)
class FirmwareResult:
    project: FirmwareProject
    out_dir: Path
    forced: bool


def _frontend_footprint(deployment: Deployment, board: Board) -> tuple[int, int]:
    """(flash, RAM) bytes of the front end compiled for the board, -Os."""
    with tempfile.TemporaryDirectory(prefix="mcuasc-fw-") as tmp:
        sizes = section_sizes(compile_objects(deployment.frontend_sources, board, Path(tmp), optimisation="-Os"))
    return sizes.flash, sizes.ram


def _audio_buffer_bytes(board: Board, clip_samples: int) -> int:
    if board.microphone.type == "file":
        return 2 * clip_samples  # one clip read from the host
    capture_blocks = CAPTURE_BLOCKS * 2 * clip_samples * CAPTURE_BLOCK_MS // 1000
    return 2 * 2 * clip_samples + capture_blocks  # double-buffered windows + the DMIC's queued blocks


def render_project(deployment: Deployment, board: Board, *, test_clip: str | Path | None = None) -> FirmwareProject:
    m = deployment.manifest
    cfg = m.frontend
    if board.build_system not in BOARD_FILE_ROLES:
        raise InputError(f"board {board.name} builds with {board.build_system!r}, which gen-firmware does not render yet; "
                         f"choose one of the boards with {', '.join(BOARD_FILE_ROLES)}.")
    resolver = resolver_methods(m.ops)
    self_test = make_self_test(deployment, test_clip)
    model_sha256 = hashlib.sha256(deployment.flatbuffer).hexdigest()
    what = f"from {deployment.manifest_path.name} for board {board.name}"
    context = {
        "banner": banner(what), "banner_text": f"Generated by mcuasc {__version__} {what}. Do not edit: regenerate instead.",
        "tool_version": __version__, "board": board, "model_name": m.name, "manifest_name": deployment.manifest_path.name,
        "model_data": deployment.flatbuffer, "model_bytes": len(deployment.flatbuffer), "model_sha256": model_sha256,
        "resolver": resolver, "labels": list(m.labels), "self_test": self_test,
        "arena_bytes": m.tflm_arena_bytes + ARENA_MARGIN_BYTES, "measured_arena_bytes": m.tflm_arena_bytes,
        "arena_margin_bytes": ARENA_MARGIN_BYTES, "input_bytes": int(cfg.shape[0] * cfg.shape[1] * cfg.shape[2]),
        "input_shape": list(m.input.shape), "output_bytes": len(m.labels), "sample_rate": cfg.sample_rate,
        "clip_samples": cfg.clip_samples,
        "cycles_unit": "instructions" if board.microphone.type == "file" else "cycles",
        "capture_block_ms": CAPTURE_BLOCK_MS, "capture_blocks": CAPTURE_BLOCKS, "main_stack_bytes": MAIN_STACK_BYTES,
        "board_rates": "any" if board.microphone.sample_rates is None else ", ".join(map(str, board.microphone.sample_rates)),
    }
    files = {f"{FRONTEND_DIR}/{name}": text for name, text in deployment.frontend_sources.items()}
    for name in FILE_ROLES:
        if not name.startswith(FRONTEND_DIR):
            files[name] = render(f"firmware/common/{Path(name).name}.j2", **context)
    board_files = BOARD_FILE_ROLES[board.build_system]
    if board.build_system == "make":  # the emulator's bare-metal support, as the front-end harness uses it
        from mcuasc.emulator import support_sources

        files.update({f"board/{name}": text for name, text in support_sources(board).items()})
    sources = sorted({n for n in (*files, *board_files) if n.endswith((".c", ".cc"))})
    for name in board_files:
        if name not in files:
            files[name] = render(f"firmware/{board.build_system}/{Path(name).name}.j2", sources=sources,
                                 c_sources=[n for n in sources if n.endswith(".c")],
                                 cxx_sources=[n for n in sources if n.endswith(".cc")], **context)

    frontend_flash, frontend_ram = _frontend_footprint(deployment, board)
    budget = firmware_budget(
        board, model_bytes=len(deployment.flatbuffer), distinct_ops=len(resolver), arena_bytes=m.tflm_arena_bytes,
        frontend_text=frontend_flash, frontend_ram=frontend_ram,
        self_test_bytes=self_test.pcm.nbytes + len(m.labels), audio_buffer_bytes=_audio_buffer_bytes(board, cfg.clip_samples))
    refusals = []
    if not board.microphone.can_capture(cfg.sample_rate):
        refusals.append(f"the model's front end runs at {cfg.sample_rate} Hz, but the {board.name}'s {board.microphone.type} "
                        f"microphone captures {context['board_rates']} Hz")
    for region in ("flash", "RAM"):
        if budget.spare(region) < 0:
            refusals.append(f"{region} needs {budget.total(region):,} bytes, the {board.name} has {budget.capacity(region):,} "
                            f"({-budget.spare(region):,} over)")
    table = [(name, FILE_ROLES.get(name) or board_files[name]) for name in sorted(files)]
    files["README.md"] = render(f"firmware/{board.build_system}/README.md.j2", budget=budget, file_table=table, **context)
    return FirmwareProject(board, deployment, files, budget, self_test, tuple(refusals))


def read_description(out_dir: Path) -> dict | None:
    """The mcuasc-firmware.json of a folder gen-firmware wrote; None for any other folder."""
    try:
        description = json.loads((out_dir / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return description if isinstance(description, dict) and description.get("format") == FORMAT else None


def write_project(project: FirmwareProject, out_dir: Path, *, force: bool = False) -> None:
    """Write into a new or empty folder, or one gen-firmware wrote (its stale files removed); else refuse unless force."""
    previous = read_description(out_dir) if out_dir.is_dir() else None
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder; choose another --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and previous is None and not force:
        raise InputError(f"{out_dir} is not empty and was not written by mcuasc gen-firmware; choose another --out "
                         "(or pass --force to write into it anyway).")
    files = {**project.files, DESCRIPTION_FILE: json.dumps(project.description(out_dir), indent=2) + "\n"}
    try:
        for name, text in sorted(files.items()):
            path = out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.partial")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
    except OSError as exc:
        raise InputError(f"cannot write into {out_dir} ({exc.strerror}); choose a writable --out.") from None
    for stale in sorted(set((previous or {}).get("files", {})) - set(files)):
        (out_dir / stale).unlink(missing_ok=True)


def generate_firmware(board_name: str, out_dir: str | Path | None = None, *, manifest: str | Path | None = None,
                      directory: str | Path = ".", test_clip: str | Path | None = None, force: bool = False) -> FirmwareResult:
    """What `mcuasc gen-firmware` does: resolve the model, render, check the board, write."""
    board = load_board(board_name)
    deployment = load_deployment(manifest=manifest, directory=directory)
    project = render_project(deployment, board, test_clip=test_clip)
    if project.refusals and not force:
        raise FirmwareRefused("; ".join(project.refusals) + ". Convert a model for this board (a sample rate its "
                              "microphone captures, a smaller input or fewer channels) or pass --force to generate "
                              "anyway; nothing was written.", project)
    target = Path(out_dir) if out_dir is not None else Path(directory) / f"firmware-{board.name}"
    write_project(project, target, force=force)
    return FirmwareResult(project, target, bool(project.refusals))
