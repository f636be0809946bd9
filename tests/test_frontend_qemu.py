"""The front end on an emulated Cortex-M4 (MPS2 AN386 under qemu-system-arm): numpy's features byte for byte,
and an instruction count that means something."""

from __future__ import annotations

import numpy as np
import pytest

from mcuasc import emulator
from mcuasc.errors import ToolError
from mcuasc.frontend import PRESETS, IntegerFrontend, preset
from mcuasc.frontend.c_source import render_frontend
from mcuasc.frontend.qemu import STAGES, EmulatedFrontend

from conftest import require_tool
from test_frontend_bitexact import corpus, first_difference

ARM_GCC = ("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")


def require_tools() -> None:
    require_tool(*ARM_GCC)
    require_tool("qemu-system-arm", "qemu-system-arm")


@pytest.mark.parametrize("name", list(PRESETS))
def test_emulated_cortex_m4_equals_numpy_on_the_whole_corpus(name):
    """Every clip of the hostile corpus and six realistic scenes, cross-compiled with -O2 as the device runs it."""
    require_tools()
    cfg = PRESETS[name]
    names, pcm = corpus(cfg)
    run = EmulatedFrontend(cfg).run(pcm)
    numpy_features = IntegerFrontend(cfg)(pcm)
    assert run.features.shape == numpy_features.shape == (len(names), *cfg.shape)
    assert np.array_equal(numpy_features, run.features), first_difference(numpy_features, run.features, names)
    assert numpy_features.min() == -128 and numpy_features.max() > 40  # the corpus spans the int8 range


def test_the_emulated_comparison_catches_a_small_table_change():
    """The same 0.03 dB change in one mel band's gain as the host test: the emulated features must differ."""
    require_tools()
    cfg = preset("bcresnet")
    sources = render_frontend(cfg)
    marker = "const int32_t mcuasc_mel_log2_gain_q16[256] = {\n"
    head, tail = sources["mcuasc_frontend_tables.c"].split(marker)
    values, rest = tail.split("};", 1)
    gains = [int(v) for v in values.replace(",", " ").split()]
    gains[100] += 700
    sources["mcuasc_frontend_tables.c"] = head + marker + ", ".join(map(str, gains)) + "\n};" + rest
    names, pcm = corpus(cfg)
    pick = [names.index(n) for n in ("white_full_scale", "pink_full_scale", "chirp_full_scale")]
    changed = EmulatedFrontend(cfg, frontend_sources=sources)(pcm[pick])
    assert not np.array_equal(changed, IntegerFrontend(cfg)(pcm[pick]))


def test_instruction_counts_are_plausible_and_the_profile_adds_up():
    require_tools()
    cfg = preset("bcresnet")
    names, pcm = corpus(cfg)
    pick = [names.index(n) for n in ("silence", "white_full_scale", "noise_mixture_00")]
    run = EmulatedFrontend(cfg).run(pcm[pick])
    silence, noise, scene = run.instructions
    # 44 frames of a 2048-point FFT with 64-bit butterflies: millions, not thousands or billions.
    assert 1e6 < noise < 1e8 and 1e6 < scene < 1e8
    assert abs(noise - scene) < 0.05 * noise  # the work hardly depends on the signal ...
    assert 0 < silence < noise / 3  # ... except that silent frames skip the FFT
    profiled = EmulatedFrontend(cfg, profile=True).run(pcm[pick])
    assert np.array_equal(profiled.features, run.features)
    assert set(profiled.stage_instructions) == set(STAGES)
    stages = sum(profiled.stage_instructions.values())
    assert np.all(stages <= profiled.instructions) and np.all(stages[1:] > 0.9 * profiled.instructions[1:])
    assert profiled.stage_instructions["fft"][0] == 0 and profiled.stage_instructions["fft"][1] > 0


CALIBRATION = """
#include "mps2_an386.h"

int main(void)
{
    uint32_t n = 1000000u;
    uint32_t start;
    uint32_t ticks;
    mps2_timer_start();
    start = mps2_timer_ticks();
    __asm__ volatile("1: subs %0, %0, #1\\n\\tbne 1b" : "+r"(n) : : "cc");
    ticks = mps2_timer_ticks() - start;
    semihost_print_u32(ticks);
    semihost_print("\\n");
    return 0;
}
"""


def test_the_timer_counts_instructions(tmp_path):
    """A loop of exactly 2,000,000 instructions takes 2,000,000 / 40 timer ticks under -icount shift=0."""
    require_tools()
    elf = emulator.build_elf({"calibration.c": CALIBRATION}, name="calibration")
    ticks = int(emulator.run_elf(elf, tmp_path, timeout=60).split()[0])
    assert emulator.INSTRUCTIONS_PER_TICK == 40
    assert abs(ticks * emulator.INSTRUCTIONS_PER_TICK - 2_000_000) <= 2 * 40


def test_exit_status_and_files_travel_over_semihosting(tmp_path):
    require_tools()
    program = """
#include "mps2_an386.h"

int main(void)
{
    static const char text[] = "written on the target";
    const int32_t handle = semihost_open("out.txt", SEMIHOST_MODE_WRITE_BINARY);
    if (handle < 0 || semihost_write(handle, text, sizeof text - 1) != sizeof text - 1) {
        return 1;
    }
    (void)semihost_close(handle);
    return semihost_open("missing.bin", SEMIHOST_MODE_READ_BINARY) < 0 ? 7 : 0;
}
"""
    elf = emulator.build_elf({"files.c": program}, name="files")
    with pytest.raises(ToolError, match=r"exit 7"):
        emulator.run_elf(elf, tmp_path, timeout=60)
    assert (tmp_path / "out.txt").read_text() == "written on the target"


def test_missing_qemu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match=r"apt-get install qemu-system-arm"):
        emulator.require_qemu()
