"""The nRF52840 board recipe against the seed's student: accuracy on the synthetic set, size, and the board's budget.

    .venv/bin/python benchmarks/board_recipe.py [--models bcresnet-student bcresnet-nrf52840] [--clips-per-class 20] [--epochs 30]

Both are trained with labels only, each with its own recipe (`mcuasc.train.recipe_for`: the seed's plateau schedule
for the student, warm-up and cosine for the board recipe; `--epochs`), on one synthetic scene set (seed 0), converted
with calibration on its train split, then rendered as nrf52840 firmware (the budget is computed before anything is
written; the seed's student is refused there, so it is rendered with force). Accuracy and log loss are on the evaluate
split: float torch on the float front end, and int8 (TFLite reference kernels) on the integer front end.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _common import machine, markdown_table
from mcuasc.boards import load_board
from mcuasc.convert import convert
from mcuasc.data.synth import synthesize_dataset
from mcuasc.firmware import render_project
from mcuasc.simulate import load_deployment
from mcuasc.train import recipe_for, train

MODELS = ("bcresnet-student", "bcresnet-nrf52840")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--clips-per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    print("# nRF52840 board recipe vs the seed's student\n")
    print(machine(), "\n")
    board = load_board("nrf52840")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synthesize_dataset(work / "scenes", args.clips_per_class, seed=0)
        for name in args.models:
            start = time.perf_counter()
            config = dataclasses.replace(recipe_for(name), epochs=args.epochs)
            train(work / "scenes", config, work / f"{name}.pt")
            train_seconds = time.perf_counter() - start
            result = convert(work / f"{name}.pt", work / name, data=work / "scenes")
            m, fid = result.manifest, result.manifest.fidelity
            project = render_project(load_deployment(manifest=result.manifest_path), board)
            budget = project.budget
            rows.append([
                name, f"{m.frontend.sample_rate / 1000:g} kHz, {'×'.join(map(str, m.frontend.shape[:2]))}",
                f"{m.parameters:,}", f"{m.macs / 1e6:.2f}",
                f"{100 * fid['float_accuracy']:.1f} → {100 * fid['int8_accuracy']:.1f} %",
                f"{fid['float_log_loss']:.3f} → {fid['int8_log_loss']:.3f}", f"{100 * fid['agreement']:.0f} %",
                len(m.ops), f"{m.flatbuffer_bytes:,}", f"{m.tflm_arena_bytes:,}",
                f"{budget.total('RAM'):,} / {budget.spare('RAM'):,}",
                "yes" if not project.refusals else "no (" + ", ".join(
                    "sample rate" if "microphone" in r else r.split(" needs")[0] for r in project.refusals) + ")",
                f"{train_seconds:.0f}",
            ])
    print(f"Synthetic set: {args.clips_per_class} clips per class (30 % evaluate), labels only, {args.epochs} epochs.\n")
    print(markdown_table(["model", "input", "params", "MMAC", "accuracy float → int8", "log loss float → int8",
                          "agreement", "ops", "flatbuffer B", "TFLM arena B", "nrf52840 RAM used / spare B",
                          "nrf52840 accepts", "train s"], rows))
    print(f"\nnrf52840: {board.ram_bytes:,} B RAM of which {board.ram_reserved_bytes:,} reserved for the platform; "
          "the recipe's goal is ≥ 32 KB spare.")


if __name__ == "__main__":
    main()
