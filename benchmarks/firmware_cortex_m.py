"""The generated firmware on the emulated Cortex-M4: instructions per 1-s clip, front end and model, TFLM reference
and CMSIS-NN kernels, with the self-test and simulate's logits checked on every run.

    MCUASC_TFLM_DIR=/path/to/tflite-micro .venv/bin/python benchmarks/firmware_cortex_m.py \\
        [--lib reference=/path/libtflm_ref.a --lib cmsis_nn=/path/libtflm_cmsis.a] [--models ...] [--epochs 1]
        [--activations int8 int16] [--checkpoint PATH ... --data DIR] [--clips N] [--clips-from DIR]

Needs a TensorFlow Lite Micro source tree (never part of mcuasc); without --lib, TFLM is compiled for each kernel
set (slow). Each model is trained briefly on a synthetic scene set (seed 0), converted, rendered for mps2-an386, built
and run under `qemu-system-arm -M mps2-an386 -icount shift=0` (instructions, not cycles) on its self-test clip and
two evaluate clips, whose logits must equal simulate's. --activations int8 int16 converts each model both ways.
--checkpoint converts trained checkpoints instead (calibrated on --data, a TAU-layout set), and --clips N runs N
evaluate clips (of --clips-from, a TAU-layout set, by default the scene set) through the firmware: every one of them
must give simulate's logits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

from _common import machine, markdown_table
from mcuasc.boards import load_board
from mcuasc.checkpoint import load_checkpoint
from mcuasc.convert import ConvertOptions, convert
from mcuasc.convert.pipeline import ACTIVATIONS, evenly
from mcuasc.data.synth import synthesize_dataset
from mcuasc.data.tau import TauDataset
from mcuasc.firmware import generate_firmware
from mcuasc.firmware.emulate import emulate, firmware_deployment, read_clips
from mcuasc.train import recipe_for, train

REAL_TIME_GOAL = 32_000_000  # front end + inference per 1-s clip, Cortex-M4 instructions (≤ 50 % of 64 MHz)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bcresnet-nrf52840", "bcresnet-student"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--activations", nargs="+", choices=tuple(ACTIVATIONS), default=["int8"])
    parser.add_argument("--lib", action="append", default=[], metavar="KERNELS=PATH",
                        help="a libtflm.a already built for the Cortex-M4 with those kernels (reference or cmsis_nn)")
    parser.add_argument("--checkpoint", nargs="+", type=Path, default=[], help="trained checkpoints to convert instead")
    parser.add_argument("--data", type=Path, help="the TAU-layout set --checkpoint's models are calibrated on")
    parser.add_argument("--clips", type=int, default=2, help="evaluate clips run through each firmware")
    parser.add_argument("--clips-from", type=Path, help="TAU-layout set whose evaluate split supplies the clips")
    args = parser.parse_args()
    if args.checkpoint and args.data is None:
        parser.error("--checkpoint needs --data, the set its models are calibrated on")
    libs = dict(item.split("=", 1) for item in args.lib)
    tree = os.environ.get("MCUASC_TFLM_DIR")
    if not tree:
        raise SystemExit("set MCUASC_TFLM_DIR to a TensorFlow Lite Micro source tree")
    clock = load_board("nrf52840").clock_hz
    print("# Firmware on a Cortex-M4 (QEMU mps2-an386, -icount shift=0)\n")
    print(machine(), "\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenes = args.data
        if scenes is None:
            scenes = work / "scenes"
            synthesize_dataset(scenes, 6, seed=0)
        clips = evenly(TauDataset.open(args.clips_from or scenes).split("evaluate"), args.clips)
        checkpoints = {f"{load_checkpoint(path).arch} ({path.parent.name})": path for path in args.checkpoint}
        for name in [] if args.checkpoint else args.models:
            train(scenes, dataclasses.replace(recipe_for(name), epochs=args.epochs, batch_size=8), work / f"{name}.pt")
            checkpoints[name] = work / f"{name}.pt"
        for k, (name, checkpoint) in enumerate(checkpoints.items()):
            for activations in args.activations:
                result = convert(checkpoint, work / f"{k}-{activations}", data=scenes,
                                 options=ConvertOptions(activations=activations))
                firmware = generate_firmware("mps2-an386", work / f"{k}-{activations}-fw", manifest=result.manifest_path).out_dir
                pcm = read_clips(firmware_deployment(firmware)[1], [c.path for c in clips])
                for kernels in ("reference", "cmsis_nn"):
                    report = emulate(firmware, tflm_dir=tree, kernels=kernels, tflm_lib=libs.get(kernels), pcm_clips=pcm)
                    runs = [report.self_test, *report.clips]
                    frontend = max(r.frontend_instructions for r in runs)
                    model = max(r.model_instructions for r in runs)
                    total = frontend + model
                    rows.append([name, activations, kernels, f"{frontend / 1e6:.2f} M", f"{model / 1e6:.2f} M", f"{total / 1e6:.2f} M",
                                 f"{1000 * total / clock:.0f}", "PASS" if total <= REAL_TIME_GOAL else "over",
                                 f"{report.arena_used_bytes:,}", f"{result.manifest.tflm_arena_bytes:,}",
                                 "PASS" if report.self_test_passed else "FAIL", _versus_simulate(report)])
    print(markdown_table(["model", "activations", "kernels", "front end", "model", "total / clip", "ms at 64 MHz", "≤ 32 M",
                          "arena used on device B", "arena measured on host B", "self-test", "logits vs simulate"], rows))
    print(f"\nInstructions (the largest of the self-test clip and {len(clips)} evaluate clips); ms assume one instruction per cycle "
          "at the nRF52840's 64 MHz, a lower bound. 'arena used on device' is TFLM's arena_used_bytes() on the 32-bit "
          "target, 'measured on host' the smallest arena the 64-bit TFLM Python runtime allocates in.")


def _versus_simulate(report) -> str:
    """'identical' when every evaluate clip gave simulate's logits, else how many did."""
    same = sum(c.logits == e for c, e in zip(report.clips, report.expected_clip_logits))
    if report.clips_match_simulate:
        return f"identical ({same} of {same})" if same > 2 else "identical"
    return f"DIFFERENT ({same} of {len(report.expected_clip_logits)} identical)"


if __name__ == "__main__":
    main()
