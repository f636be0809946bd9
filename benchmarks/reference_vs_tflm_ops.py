"""Where TFLite's reference kernels and TFLM can disagree: every elementwise op of a converted model with a constant
operand, cut out as a one-op model and run on all 256 values of its variable int8 input.

    .venv/bin/python benchmarks/reference_vs_tflm_ops.py [MODEL_int8.tflite] [--epochs 1]

Without a model, a BC-ResNet student is trained briefly on a synthetic scene set (seed 0) and converted. For each
MUL/ADD/SUB whose second operand is a constant, the variable input is filled with each int8 value in turn, so every
(variable, constant) operand pair the op can meet is computed by TFLite (BUILTIN_REF), TFLite's default kernels
(without delegates) and the TFLM runtime; for MUL also by TFLite's integer formula (mcuasc.simulate.localise).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from _common import machine, markdown_table
from mcuasc.convert import analysis
from mcuasc.convert.fixed_point import int8_mul_formula

ELEMENTWISE = ("MUL", "ADD", "SUB")


def one_op_model(flatbuffer: bytes, op_index: int) -> bytes:
    """The model with only operator op_index, its first input as the graph input and its output as the graph output."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    graph = model.subgraphs[0]
    op = graph.operators[op_index]
    graph.operators, graph.inputs, graph.outputs = [op], [op.inputs[0]], [op.outputs[0]]
    model.signatureDefs = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def has_constant_second_operand(flatbuffer: bytes, op_index: int) -> bool:
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    graph = model.subgraphs[0]
    op = graph.operators[op_index]
    return len(op.inputs) == 2 and model.buffers[graph.tensors[op.inputs[1]].buffer].data is not None


def audit(flatbuffer: bytes) -> list[list[object]]:
    full = analysis.reference_interpreter(flatbuffer)
    rows = []
    for index, op in enumerate(full._get_ops_details()):
        if op["op_name"] not in ELEMENTWISE or not has_constant_second_operand(flatbuffer, index):
            continue
        small = one_op_model(flatbuffer, index)
        reference = analysis.reference_interpreter(small)
        default = Interpreter(model_content=small, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        default.allocate_tensors()
        tflm = analysis.tflm_interpreter(small, 64 << 20)
        input_detail, output_detail = reference.get_input_details()[0], reference.get_output_details()[0]
        constant = next(t for t in reference.get_tensor_details() if t["index"] == op["inputs"][1])
        b = reference.get_tensor(constant["index"])
        shape = tuple(input_detail["shape"][1:])
        pairs: dict[str, set] = {"ref≠tflm": set(), "default≠tflm": set(), "ref≠formula": set(), "tflm≠formula": set()}
        total = set()
        for value in range(-128, 128):
            x = np.full(shape, value, np.int8)
            out_ref, out_default, out_tflm = analysis.invoke(reference, x), analysis.invoke(default, x), analysis.tflm_invoke(tflm, x)
            b_full = np.broadcast_to(b, (1, *shape))[0]
            total.update(zip([value] * b_full.size, b_full.ravel().tolist()))
            found = {"ref≠tflm": out_ref != out_tflm, "default≠tflm": out_default != out_tflm}
            if op["op_name"] == "MUL":
                formula = int8_mul_formula(x[None], b, analysis.tensor_quantization(input_detail),
                                           analysis.tensor_quantization(constant),
                                           analysis.tensor_quantization(output_detail))[0]
                found["ref≠formula"], found["tflm≠formula"] = out_ref != formula, out_tflm != formula
            for key, mask in found.items():
                pairs[key].update((value, int(v)) for v in b_full[mask].ravel().tolist())
        shapes = " × ".join(str(list(full._get_tensor_details(i, 0)["shape"])) for i in op["inputs"])
        rows.append([index, op["op_name"], shapes, len(total), len(pairs["ref≠tflm"]), len(pairs["default≠tflm"]),
                     "—" if op["op_name"] != "MUL" else len(pairs["ref≠formula"]),
                     "—" if op["op_name"] != "MUL" else len(pairs["tflm≠formula"]),
                     ", ".join(f"({a}, {c})" for a, c in sorted(pairs["ref≠tflm"])[:4])])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="an int8 flatbuffer from mcuasc convert")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print("# TFLite reference kernels vs TFLM, op by op\n")
    print(machine(), "\n")
    if args.model is not None:
        flatbuffer, what = args.model.read_bytes(), str(args.model)
    else:
        from mcuasc.convert import convert
        from mcuasc.data.synth import synthesize_dataset
        from mcuasc.train import recipe_for, train

        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            synthesize_dataset(work / "scenes", 6, seed=0)
            config = dataclasses.replace(recipe_for("bcresnet-student"), epochs=args.epochs, batch_size=8)
            train(work / "scenes", config, work / "student.pt")
            result = convert(work / "student.pt", work / "out", data=work / "scenes")
            flatbuffer = (work / "out" / result.manifest.files["tflite"]).read_bytes()
        what = f"bcresnet-student, {args.epochs} epoch(s) on the synthetic set"
    rows = audit(flatbuffer)
    print(f"model: {what}\n")
    print(markdown_table(["op #", "op", "operand shapes", "operand pairs", "REF ≠ TFLM", "default ≠ TFLM",
                          "REF ≠ formula", "TFLM ≠ formula", "first pairs (input, constant) where REF ≠ TFLM"], rows))
    differing = [r for r in rows if r[4]]
    print(f"\n{len(differing)} of {len(rows)} elementwise ops with a constant operand have operand pairs where TFLite's "
          "reference kernels and TFLM disagree.")


if __name__ == "__main__":
    main()
