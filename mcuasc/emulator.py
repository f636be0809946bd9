"""An emulated Cortex-M4 for the host: the Arm MPS2+ AN386 under qemu-system-arm, with instruction counting.

Bare-metal board support (vector table and start-up, linker script, semihosting, CMSDK timer) is rendered from
firmware_templates/mps2-an386/; a program adds its own sources with a main(). The ELF is cross-compiled with
the board's flags (boards/mps2-an386.yaml) and strict C99, linked with -nostartfiles against newlib-nano's
nosys stubs, and cached like the host harness.

QEMU runs it with ``-icount shift=0``: virtual time advances 1 ns per executed instruction, so the CMSDK APB
timer 0 (25 MHz) ticks once every 40 instructions. That is the instruction count, not cycles: a real
Cortex-M4 takes about one cycle for most instructions and more for loads, branches and long multiplies.
Semihosting's SYS_ELAPSED/SYS_CLOCK return host time and are not used. The program talks to the host over
semihosting (``-semihosting-config enable=on,target=native``): files in the run's working directory, text
on QEMU's standard output, and its exit status as QEMU's.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from mcuasc.boards import Board, load_board
from mcuasc.errors import ToolError
from mcuasc.frontend.host import cache_dir
from mcuasc.render import banner, render
from mcuasc.toolchain import compile_objects, link_executable

QEMU = "qemu-system-arm"
BOARD = "mps2-an386"
TEMPLATE_DIR = "mps2-an386"
ICOUNT_SHIFT = 0  # 2^0 ns of virtual time per instruction
TIMER_HZ = 25_000_000  # CMSDK APB timer clock on QEMU's MPS2 boards
INSTRUCTIONS_PER_TICK = 10**9 // (2**ICOUNT_SHIFT * TIMER_HZ)  # 40
SUPPORT_SOURCES = ("mps2_an386.h", "semihosting.c", "startup.c")
LINKER_SCRIPT = "mps2_an386.ld"


def require_qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise ToolError(f"'{QEMU}' is not installed; install it with 'apt-get install qemu-system-arm'.")
    return path


def template_context(board: Board) -> dict[str, object]:
    return {
        "board": board,
        "icount_shift": ICOUNT_SHIFT,
        "ns_per_instruction": 2**ICOUNT_SHIFT,
        "timer_hz": TIMER_HZ,
        "instructions_per_tick": INSTRUCTIONS_PER_TICK,
    }


def support_sources(board: Board) -> dict[str, str]:
    """File name → text of the board support: start-up, semihosting, timer header and the linker script."""
    context = template_context(board)
    names = (*SUPPORT_SOURCES, LINKER_SCRIPT)
    return {name: render(f"{TEMPLATE_DIR}/{name}.j2", banner=banner(f"for board {board.name}"), **context) for name in names}


def build_elf(
    program_sources: dict[str, str], *, optimisation: str = "-O2", extra_flags: tuple[str, ...] = (), name: str = "program"
) -> Path:
    """Cross-compile program_sources (which define main()) with the board support and link them; cached by a
    hash of every source, flag and the compiler. Returns the ELF's path."""
    board = load_board(BOARD)
    sources = {**support_sources(board), **program_sources}
    key = hashlib.sha256(
        repr((sorted(sources.items()), board.compiler, board.compiler_flags, optimisation, extra_flags)).encode()
    ).hexdigest()[:20]
    target = cache_dir() / "mps2-an386" / key
    elf = target / f"{name}.elf"
    if elf.exists():
        return elf
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=target.parent))
    objects = compile_objects(sources, board, build, optimisation=optimisation, extra_flags=extra_flags)
    link_executable(objects, board, build / LINKER_SCRIPT, build / f"{name}.elf")
    try:
        build.rename(target)  # atomic: parallel builders race harmlessly
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
    return elf


def qemu_command(elf: Path) -> list[str]:
    return [
        require_qemu(), "-M", BOARD, "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-icount", f"shift={ICOUNT_SHIFT}", "-kernel", str(elf),
    ]


def run_elf(elf: Path, workdir: Path, *, timeout: float) -> str:
    """Run the ELF under QEMU in workdir (its semihosting files live there); returns what it printed (QEMU 7.2
    writes the semihosting console to its standard error, UART output goes to standard output: both, in that order).

    A non-zero exit status or a run longer than timeout seconds raises ToolError with that output."""
    command = qemu_command(elf)
    try:
        result = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = ((exc.stderr or b"") + (exc.stdout or b"")).decode(errors="replace")
        raise ToolError(f"{QEMU} did not finish {elf.name} within {timeout:g} s; output so far:\n{output.strip()}") from None
    output = (result.stderr + result.stdout).decode(errors="replace")
    if result.returncode != 0:
        raise ToolError(f"{elf.name} failed under {QEMU} (exit {result.returncode}):\n{output.strip()}")
    return output
