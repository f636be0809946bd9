"""convert on this machine: wall time, op count, flatbuffer size and TFLM arena for every zoo model.

    .venv/bin/python benchmarks/convert.py [--models bcresnet-student mobilenetv2-ca ...] [--clips-per-class 6] [--epochs 1]
        [--activations int8 int16]

Each model is trained (one epoch by default) on a synthetic scene set (seed 0) so its batch-norm statistics are real,
then converted with `mcuasc.convert.convert` (calibration on the set's train split, fidelity on its evaluate
split). Wall time is the whole command: ONNX export, onnx2tf, TFLite conversion, TFLM arena search, fidelity
and per-layer SQNR. Fidelity of a one-epoch model says little; the figures that matter here are the graph's.
--activations int8 int16 converts each model both ways (a row each).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _common import machine, markdown_table
from mcuasc.convert import ConvertOptions, convert
from mcuasc.convert.pipeline import ACTIVATIONS
from mcuasc.data.synth import synthesize_dataset
from mcuasc.models import ARCHITECTURES
from mcuasc.train import recipe_for, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--clips-per-class", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before converting (fidelity needs a trained model)")
    parser.add_argument("--activations", nargs="+", choices=tuple(ACTIVATIONS), default=["int8"])
    args = parser.parse_args()
    print("# convert\n")
    print(machine(), "\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synthesize_dataset(work / "scenes", args.clips_per_class, seed=0)
        for name in args.models:
            checkpoint = work / f"{name}.pt"
            config = dataclasses.replace(recipe_for(name), epochs=args.epochs, batch_size=8)
            train(work / "scenes", config, checkpoint)
            for activations in args.activations:
                start = time.perf_counter()
                result = convert(checkpoint, work / f"{name}-{activations}", data=work / "scenes",
                                 options=ConvertOptions(activations=activations))
                seconds = time.perf_counter() - start
                m = result.manifest
                layout = sum(m.ops.count(op) for op in ("TRANSPOSE", "GATHER", "RESHAPE"))
                fid = m.fidelity
                rows.append([name, activations, args.epochs, f"{100 * fid['float_accuracy']:.0f} → {100 * fid['int8_accuracy']:.0f} %",
                             f"{fid['float_log_loss']:.2f} → {fid['int8_log_loss']:.2f}", f"{m.parameters:,}", f"{m.macs / 1e6:.2f}",
                             f"{seconds:.0f}", len(m.ops), layout, f"{m.flatbuffer_bytes:,}", f"{m.tflm_arena_bytes:,}",
                             f"{100 * m.fidelity['agreement']:.0f} %", f"{min(r['sqnr_db'] for r in m.layer_sqnr):.1f}",
                             f"{m.layer_sqnr[-1]['sqnr_db']:.1f}"])
    print(markdown_table(["model", "activations", "epochs", "accuracy float → int8", "log loss float → int8", "params", "MMAC", "convert s", "ops", "TRANSPOSE/GATHER/RESHAPE",
                          "flatbuffer B", "TFLM arena B", "agreement", "lowest layer SQNR dB", "output SQNR dB"], rows))
    print("\nTFLM arena: smallest size in which the TFLM runtime (host build) allocates the model.")


if __name__ == "__main__":
    main()
