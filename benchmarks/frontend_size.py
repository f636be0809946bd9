"""Static footprint of the rendered C front end on a board: code vs tables, text/data/bss, per preset.

    .venv/bin/python benchmarks/frontend_size.py [--board nrf52840] [--opts Os O2]

Each preset's front end (mcuasc.frontend.c_source.render_frontend) is cross-compiled in a temporary directory
with the board's compiler and flags (mcuasc.toolchain.compile_objects, also -ffunction-sections -fdata-sections)
and measured with arm-none-eabi-size on the object files, before linking: "code" is mcuasc_frontend.o (the
front-end functions and its working buffers), "tables" is mcuasc_frontend_tables.o (window, twiddles, mel
weights, log2 table as const data). flash = text + data, RAM = data + bss. Stack use is not included.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from _common import machine, markdown_table
from mcuasc.boards import load_board
from mcuasc.frontend import PRESETS, preset
from mcuasc.frontend.c_source import render_frontend
from mcuasc.toolchain import compile_objects, section_sizes

PARTS = {"code": "mcuasc_frontend.o", "tables": "mcuasc_frontend_tables.o"}


def compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return f"{compiler} (version unknown)"


def kib(n: int) -> str:
    return f"{n / 1024:g} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="nrf52840", help="board name (boards/*.yaml), default nrf52840")
    parser.add_argument("--opts", nargs="+", default=["Os", "O2"],
                        help="optimisation levels without the dash, e.g. --opts Os O2 O3 (default Os O2)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    args.opts = ["-" + o.lstrip("-") for o in args.opts]
    board = load_board(args.board)

    print(f"# Front-end footprint on {board.name}: code vs tables, bytes\n")
    print(machine(compiler_version(board.compiler)) + "\n")
    print(f"board: {board.description}; {board.cpu} at {board.clock_hz / 1e6:g} MHz; "
          f"flash {board.flash_bytes} B ({kib(board.flash_bytes)}), RAM {board.ram_bytes} B ({kib(board.ram_bytes)}); "
          f"reserved for the system: flash {kib(board.flash_reserved_bytes)}, RAM {kib(board.ram_reserved_bytes)}; "
          f"flags: {' '.join(board.compiler_flags)}\n")

    rows, summary = [], []
    for name in args.presets:
        cfg = preset(name)
        sources = render_frontend(cfg)
        for opt in args.opts:
            with tempfile.TemporaryDirectory(prefix="mcuasc-size-") as tmp:
                objects = compile_objects(sources, board, Path(tmp), optimisation=opt)
                by_name = {o.name: o for o in objects}
                missing = [f for f in PARTS.values() if f not in by_name]
                if missing:
                    raise SystemExit(f"expected objects {missing} not built; got {sorted(by_name)}")
                sizes = {part: section_sizes([by_name[f]]) for part, f in PARTS.items()}
                others = [o for o in objects if o.name not in PARTS.values()]
                if others:
                    sizes["other"] = section_sizes(others)
                sizes["total"] = section_sizes(objects)
            for part, s in sizes.items():
                label = f"**{part}**" if part == "total" else part
                rows.append([name, opt, label, s.text, s.data, s.bss, s.flash, s.ram,
                             f"{100 * s.flash / board.flash_bytes:.2f} %", f"{100 * s.ram / board.ram_bytes:.2f} %"])
            total = sizes["total"]
            summary.append(f"{name} {opt}: flash {total.flash} B = {100 * total.flash / board.flash_bytes:.1f} % of "
                           f"{kib(board.flash_bytes)} ({100 * total.flash / (board.flash_bytes - board.flash_reserved_bytes):.1f} % "
                           f"of what the system leaves), RAM {total.ram} B = {100 * total.ram / board.ram_bytes:.1f} % of "
                           f"{kib(board.ram_bytes)} ({100 * total.ram / (board.ram_bytes - board.ram_reserved_bytes):.1f} % "
                           "of what the system leaves)")

    print(markdown_table(
        ["preset", "opt", "part", "text", "data", "bss", "flash (text+data)", "RAM (data+bss)", "of board flash", "of board RAM"],
        rows, "lllrrrrrrr"))
    print("\ncode = mcuasc_frontend.o (functions, and the working buffers in bss: FFT buffer, and with Δ/ΔΔ the "
          "whole clip's log-mel); tables = mcuasc_frontend_tables.o (const: window, twiddles, bit-reverse order, mel segment "
          "sizes, rising-edge weights, band gains, log2 table). Not included: the caller's int16 clip buffer ("
          + ", ".join(f"{n}: {preset(n).clip_samples * 2} B" for n in args.presets) + ") and the stack.\n")
    for line in summary:
        print(f"- {line}")


if __name__ == "__main__":
    main()
