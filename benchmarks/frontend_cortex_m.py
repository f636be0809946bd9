"""Instructions per one-second clip of the C front end on a Cortex-M4, counted under QEMU.

    .venv/bin/python benchmarks/frontend_cortex_m.py [--clips 4] [--opts O2 Os] [--board nrf52840]

Each preset's rendered front end is cross-compiled for the MPS2 AN386 (Cortex-M4, the board flags of
boards/mps2-an386.yaml, which equal the nRF52840's) with the harness of mcuasc.frontend.qemu, and run under
qemu-system-arm -icount shift=0 on realistic_corpus clips (seed 0); CMSDK timer 0 counts 40 instructions a
tick. The features are checked against the integer numpy path. The milliseconds are an estimate at the
--board's clock assuming one instruction per cycle: a real Cortex-M4 spends more than one cycle on loads,
taken branches and 64-bit multiply-accumulates, and flash wait states add more, so take them as a lower bound.
A second table comes from a profiling build: the instructions of each stage of the frames.
"""

from __future__ import annotations

import argparse
import subprocess

import numpy as np

from _common import machine, markdown_table
from mcuasc.boards import load_board
from mcuasc.frontend import PRESETS, IntegerFrontend, preset
from mcuasc.frontend.qemu import STAGES, EmulatedFrontend
from mcuasc.testsignals import realistic_corpus

GOAL = 8_000_000  # instructions per 1-s clip for the whole front end


def tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return f"{command[0]} (version unknown)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="realistic clips per preset (default 4)")
    parser.add_argument("--opts", nargs="+", default=["O2", "Os"], help="optimisation levels without the dash")
    parser.add_argument("--board", default="nrf52840", help="board whose clock the milliseconds assume (default nrf52840)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    opts = ["-" + o.lstrip("-") for o in args.opts]
    board = load_board(args.board)
    mhz = board.clock_hz / 1e6

    print("# Front end on a Cortex-M4 (QEMU mps2-an386, -icount shift=0): instructions per 1-s clip\n")
    print(machine(tool_version(["arm-none-eabi-gcc", "--version"]), tool_version(["qemu-system-arm", "--version"])) + "\n")
    print(f"{args.clips} realistic clips per preset; ms at {board.name}'s {mhz:g} MHz assuming 1 instruction per cycle "
          f"(a lower bound); goal ≤ {GOAL / 1e6:g} M instructions per clip.\n")

    rows, profile_rows = [], []
    for name in args.presets:
        cfg = preset(name)
        pcm = np.stack(list(realistic_corpus(cfg.clip_samples, cfg.sample_rate, count=args.clips).values()))
        expected = IntegerFrontend(cfg)(pcm)
        for opt in opts:
            run = EmulatedFrontend(cfg, optimisation=opt).run(pcm)
            if not np.array_equal(run.features, expected):
                raise SystemExit(f"{name} {opt}: the emulated features differ from the integer numpy path")
            per_clip = run.instructions_per_clip
            rows.append([name, opt, f"{per_clip / 1e6:.2f} M", f"{per_clip / cfg.n_stft_frames / 1e3:.1f} K",
                         f"{1e3 * per_clip / board.clock_hz:.0f}", f"{per_clip / GOAL:.2f}×",
                         "PASS" if per_clip <= GOAL else "over"])
        profiled = EmulatedFrontend(cfg, optimisation=opts[0], profile=True).run(pcm)
        staged = {stage: profiled.stage_instructions[stage].mean() for stage in STAGES}
        total = profiled.instructions_per_clip
        rest = total - sum(staged.values())
        profile_rows.append([name, opts[0], *(f"{v / 1e6:.2f} M ({100 * v / total:.0f} %)" for v in staged.values()),
                             f"{rest / 1e6:.2f} M ({100 * rest / total:.0f} %)", f"{total / 1e6:.2f} M"])

    print(markdown_table(["preset", "opt", "instructions / clip", "per STFT frame", f"ms at {mhz:g} MHz", "of goal", "goal"],
                         rows, "llrrrrl"))
    print("\nWhere the instructions go (profiling build; its timer marks add a few dozen instructions a frame):\n")
    print(markdown_table(["preset", "opt", "window", "FFT (+ normalising shift)", "real split", "spectrum + mel + log", "rest", "total"],
                         profile_rows, "llrrrrrr"))
    print("\nrest: the frame loop, int8 quantization, Δ/ΔΔ, and the floor fill of silent frames.")


if __name__ == "__main__":
    main()
