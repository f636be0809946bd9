"""Cross-compiling generated C for a board and reading section sizes (arm-none-eabi-gcc, -size)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mcuasc.boards import Board
from mcuasc.errors import ToolError

STRICT_C = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")


@dataclass(frozen=True)
class SectionSizes:
    text: int  # code and const tables (flash)
    data: int  # initialised RAM (also stored in flash)
    bss: int  # zeroed RAM

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"'{tool}' is not installed; install it with 'apt-get install {package}'.")
    return path


def compile_objects(
    sources: dict[str, str], board: Board, build_dir: Path, optimisation: str = "-Os", extra_flags: tuple[str, ...] = ()
) -> list[Path]:
    """Write sources into build_dir and compile every .c file with the board's compiler and flags (plus extra_flags,
    e.g. -D defines)."""
    compiler = require(board.compiler, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    build_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (build_dir / name).write_text(text, encoding="utf-8")
    objects = []
    for name in sorted(n for n in sources if n.endswith(".c")):
        obj = build_dir / (Path(name).stem + ".o")
        cmd = [compiler, *board.compiler_flags, *STRICT_C, optimisation, "-ffunction-sections", "-fdata-sections", *extra_flags]
        result = subprocess.run([*cmd, "-I", str(build_dir), "-c", str(build_dir / name), "-o", str(obj)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ToolError(f"{board.compiler} failed on {name} for board {board.name}:\n{result.stderr.strip()}")
        objects.append(obj)
    return objects


def link_executable(objects: list[Path], board: Board, linker_script: Path, output: Path) -> Path:
    """Link bare-metal objects with their own start-up code (-nostartfiles) against newlib-nano with the nosys
    stubs (only memcpy/memset and libgcc's helpers are pulled in), dropping unused sections."""
    compiler = require(board.compiler, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    cmd = [compiler, *board.compiler_flags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", "-T", str(linker_script), *map(str, objects), "-o", str(output)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolError(f"linking {output.name} for board {board.name} failed:\n{result.stderr.strip()}")
    return output


def section_sizes(objects: list[Path], size_tool: str = "arm-none-eabi-size") -> SectionSizes:
    tool = require(size_tool, "binutils-arm-none-eabi")
    result = subprocess.run([tool, "-B", "-t", *map(str, objects)], capture_output=True, text=True, check=True)
    total = result.stdout.strip().splitlines()[-1].split()  # "text data bss dec hex (TOTALS)"
    return SectionSizes(text=int(total[0]), data=int(total[1]), bss=int(total[2]))
