"""Cross-compiling generated C for a board and reading section sizes (arm-none-eabi-gcc, -size)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mcuasc.boards import Board
from mcuasc.errors import ToolError

STRICT_C = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
# C++ as TFLM builds it: no exceptions, no RTTI.
STRICT_CXX = ("-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fno-exceptions", "-fno-rtti")


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


def compile_objects(sources: dict[str, str], board: Board, build_dir: Path, optimisation: str = "-Os",
                    compile_only: tuple[str, ...] | None = None, extra_flags: tuple[str, ...] = ()) -> list[Path]:
    """Write sources (relative paths) into build_dir and compile every .c (C99) and .cc (C++17) file, or only those
    in compile_only, with the board's compiler and flags (plus extra_flags, e.g. -D defines); every source folder is
    on the include path."""
    compiler = require(board.compiler, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    build_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (build_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (build_dir / name).write_text(text, encoding="utf-8")
    includes = [arg for folder in sorted({str((build_dir / n).parent) for n in sources}) for arg in ("-I", folder)]
    objects = []
    for name in sorted(n for n in sources if n.endswith((".c", ".cc")) and (compile_only is None or n in compile_only)):
        obj = build_dir / (name.replace("/", "__").rsplit(".", 1)[0] + ".o")
        cxx = name.endswith(".cc")
        tool = require(compiler[: -len("gcc")] + "g++", "gcc-arm-none-eabi") if cxx and compiler.endswith("gcc") else compiler
        cmd = [tool, *board.compiler_flags, *(STRICT_CXX if cxx else STRICT_C), optimisation, "-ffunction-sections",
               "-fdata-sections", *extra_flags]
        result = subprocess.run([*cmd, *includes, "-c", str(build_dir / name), "-o", str(obj)], capture_output=True, text=True)
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
