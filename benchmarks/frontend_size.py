"""Static Cortex-M4 footprint of the rendered front end: code, tables and buffers, per preset.

    .venv/bin/python benchmarks/frontend_size.py [--board nrf52840]

Cross-compiled with arm-none-eabi-gcc and the board's flags (-Os and -O2); sizes from arm-none-eabi-size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import markdown_table
from mcuasc.boards import load_board
from mcuasc.frontend import PRESETS
from mcuasc.frontend.c_source import render_frontend
from mcuasc.toolchain import compile_objects, section_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="nrf52840")
    args = parser.parse_args()
    board = load_board(args.board)
    print(f"# Front-end footprint for {board.name} ({board.cpu}, {board.flash_bytes // 1024} KB flash, "
          f"{board.ram_bytes // 1024} KB RAM), flags: {' '.join(board.compiler_flags)}\n")
    rows = []
    for name, cfg in PRESETS.items():
        for opt in ("-Os", "-O2"):
            with tempfile.TemporaryDirectory() as tmp:
                objects = compile_objects(render_frontend(cfg), board, Path(tmp), optimisation=opt)
                code = section_sizes([o for o in objects if o.name == "mcuasc_frontend.o"])
                tables = section_sizes([o for o in objects if o.name == "mcuasc_frontend_tables.o"])
                total = section_sizes(objects)
            rows.append([
                name, opt, code.text, tables.text, total.data, total.bss, total.flash, total.ram,
                f"{100 * total.flash / board.flash_bytes:.1f} %", f"{100 * total.ram / board.ram_bytes:.1f} %",
            ])
    print(markdown_table(
        ["preset", "opt", "code text", "tables text", "data", "bss", "flash total", "RAM total", "of flash", "of RAM"], rows))
    print("\nbss: the FFT buffer (4·(N+2) B), the spectrum (8·(N/2+1) B), and with Δ/ΔΔ the clip's log-mel (4·mels·frames B).")


if __name__ == "__main__":
    main()
