"""The rendered front end cross-compiles for the boards' Cortex-M4 with strict warnings and no floating point."""

import re
import subprocess

import pytest

from mcuasc.boards import board_names, load_board
from mcuasc.frontend import PRESETS
from mcuasc.frontend.c_source import render_frontend
from mcuasc.toolchain import compile_objects, section_sizes

from conftest import require_tool

# VFP/FPU instructions, and calls into the soft-float runtime.
FLOAT_INSTRUCTION = re.compile(r"\tv(add|sub|mul|div|cvt|mov|ldr|str|push|pop|cmp|sqrt|fma|abs|neg)\S*\s|__aeabi_[fd]|__aeabi_[iu]?l2[fd]")


@pytest.mark.parametrize("board_name", board_names())
@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_front_end_cross_compiles_without_floating_point(board_name, preset_name, tmp_path):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    board = load_board(board_name)
    objects = compile_objects(render_frontend(PRESETS[preset_name]), board, tmp_path, optimisation="-O2")
    sizes = section_sizes(objects)
    assert sizes.text > 1000 and sizes.bss > 4 * PRESETS[preset_name].n_fft  # the FFT buffer, at least
    assert sizes.flash < board.flash_bytes and sizes.ram < board.ram_bytes
    for obj in objects:
        disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
        assert "mcuasc" in disassembly or "tables" in obj.name
        found = FLOAT_INSTRUCTION.findall(disassembly)
        assert not found, f"{obj.name} uses floating point: {sorted(set(found))}"


def test_the_float_check_can_fail(tmp_path):
    """The instruction pattern does find floating point when it is there."""
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    board = load_board("nrf52840")
    objects = compile_objects({"f.c": "float scale(float x, int y) { return x * 0.5f + (float)y; }\n"}, board, tmp_path)
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(objects[0])], capture_output=True, text=True, check=True).stdout
    assert FLOAT_INSTRUCTION.search(disassembly)
