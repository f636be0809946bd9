"""simulate on this machine: clips per second, one clip at a time and in batch, and the share of time per stage.

    .venv/bin/python benchmarks/simulate.py [--clips-per-class 10] [--epochs 1] [--repeats 3]

A BC-ResNet student is trained briefly on a synthetic scene set (seed 0) and converted; then every clip of the set
(train and evaluate splits, 1-s 24-bit 44.1 kHz WAVs) goes through `mcuasc.simulate`: WAV reader, integer front end
in numpy and in C (compiled for the host; one harness process per Simulator, fed through a pipe), the int8 model on
TFLite's reference kernels and on the TFLM runtime, byte comparison. "one clip at a time": one Simulator, `simulate` per file, one process.
"batch": `simulate_many` over all the cores, 8 files per batch. The goal: front ends and bookkeeping cost at most
10 % on top of the two interpreters, i.e. (read + front ends + compare) / (TFLite-ref + TFLM) ≤ 10 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _common import machine, markdown_table
from mcuasc.convert import convert
from mcuasc.data.synth import synthesize_dataset
from mcuasc.simulate import Simulator, load_deployment, resolve_clips, simulate_many
from mcuasc.simulate.report import stage_seconds
from mcuasc.simulate.simulator import STAGES, default_jobs
from mcuasc.train import recipe_for, train

OVERHEAD = ("read", "frontend_numpy", "frontend_c", "compare")
INTERPRETERS = ("tflite_ref", "tflm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-class", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode; the fastest is reported")
    args = parser.parse_args()
    print("# simulate\n")
    print(machine(f"{default_jobs()} worker processes for batch"), "\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synthesize_dataset(work / "scenes", args.clips_per_class, seed=0)
        checkpoint = work / "student.pt"
        train(work / "scenes", dataclasses.replace(recipe_for("bcresnet-student"), epochs=args.epochs, batch_size=8), checkpoint)
        convert(checkpoint, work / "model", data=work / "scenes")
        deployment = load_deployment(directory=work / "model")
        sources = resolve_clips([work / "scenes" / "audio"], deployment.labels)

        rows, shares = [], []
        simulator = Simulator(deployment)
        simulator.simulate(sources[0])  # warm caches (C harness compiled, interpreters allocated)
        modes = {
            "one clip at a time (1 process)": lambda: [simulator.simulate(s) for s in sources],
            f"batch ({default_jobs()} processes, 8 files a batch)": lambda: simulate_many(deployment, sources),
        }
        for mode, run in modes.items():
            best, results = float("inf"), []
            for _ in range(args.repeats):
                start = time.perf_counter()
                outcome = run()
                seconds = time.perf_counter() - start
                if seconds < best:
                    best, results = seconds, outcome
            per_stage = stage_seconds(results)
            overhead = sum(per_stage[s] for s in OVERHEAD) / sum(per_stage[s] for s in INTERPRETERS)
            exact = sum(r.bit_exact for r in results)
            rows.append([mode, len(results), f"{best:.2f}", f"{len(results) / best:.1f}", f"{1000 * best / len(results):.1f}",
                         f"{exact} / {len(results)}", f"{100 * overhead:.1f} %", "PASS" if overhead <= 0.10 else "FAIL"])
            total = sum(per_stage.values())
            shares.append([mode, *(f"{100 * per_stage[s] / total:.1f} %" for s in STAGES),
                           *(f"{1000 * per_stage[s] / len(results):.2f}" for s in STAGES)])
    print(markdown_table(["mode", "clips", "wall s", "clips / s", "ms / clip", "bit-exact clips",
                          "front ends + bookkeeping vs interpreters", "goal ≤ 10 %"], rows))
    print("\nShare of the summed per-stage time (CPU time in each worker), then ms per clip:\n")
    print(markdown_table(["mode", *STAGES, *(f"{s} ms" for s in STAGES)], shares))
    print("\nFor a clip that is not bit-exact, `mcuasc simulate` names the first divergent feature or operator; see README,"
          " Simulate.")


if __name__ == "__main__":
    main()
