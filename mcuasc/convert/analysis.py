"""What a converted flatbuffer is: its ops, the TFLM arena it needs, how well int8 follows float.

The int8 reference is TFLite with reference kernels (BUILTIN_REF), which the TFLM runtime matches bit for bit;
TFLite's default optimized kernels do not, so they are never used here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Collect what native code writes to stdout/stderr (TFLM reports allocation failures there)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def reference_interpreter(flatbuffer: bytes, preserve_all_tensors: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=flatbuffer, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=preserve_all_tensors)
    interpreter.allocate_tensors()
    return interpreter


def op_names(interpreter) -> list[str]:
    """Builtin op of every operator of a TFLite interpreter's model, in execution order."""
    return [op["op_name"] for op in interpreter._get_ops_details()]


def tensor_quantization(detail: dict) -> tuple[float, int]:
    scale, zero_point = detail["quantization"]
    return float(scale), int(zero_point)


def invoke(interpreter, x: np.ndarray) -> np.ndarray:
    """One clip (NHWC without the batch axis) through a TFLite interpreter; returns the output row."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy()


class TflmError(Exception):
    pass


def tflm_interpreter(flatbuffer: bytes, arena_size: int):
    from tflite_micro.python.tflite_micro import runtime

    with captured_native_output() as native:
        try:
            return runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)
        except Exception as exc:  # the runtime raises RuntimeError/ValueError with its own text
            error = exc
    raise TflmError("; ".join([str(error).strip(), *[l.strip() for l in native if l.strip()][:4]]))


def unsupported_ops(message: str) -> list[str]:
    """Op names from TFLM's "Didn't find op for builtin opcode 'X'" lines."""
    found = []
    for part in message.split("opcode '")[1:]:
        name = part.split("'", 1)[0]
        if name not in found:
            found.append(name)
    return found


def measure_tflm_arena(flatbuffer: bytes, upper: int = 16 << 20, granularity: int = 16) -> int:
    """Smallest arena (bytes, multiple of `granularity`) in which the TFLM runtime allocates the model.

    Measured with the host (64-bit) build of TFLM: its bookkeeping structs hold pointers, so a 32-bit
    Cortex-M needs the same or slightly less."""
    try:
        tflm_interpreter(flatbuffer, upper)
    except TflmError as exc:
        raise TflmError(f"TFLM cannot allocate the model even in {upper >> 20} MB: {exc}") from None
    low, high = 0, upper // granularity
    while low < high:
        mid = (low + high) // 2
        try:
            tflm_interpreter(flatbuffer, mid * granularity)
            high = mid
        except TflmError:
            low = mid + 1
    return low * granularity


def tflm_invoke(interpreter, x: np.ndarray) -> np.ndarray:
    interpreter.set_input(x[None], 0)
    interpreter.invoke()
    return interpreter.get_output(0)[0].copy()


def tflm_matches(flatbuffer: bytes, arena_size: int, features, reference_logits) -> list[bool]:
    """Per clip: does the TFLM runtime (what the device runs) give the reference kernels' int8 logits byte for byte."""
    tflm = tflm_interpreter(flatbuffer, arena_size)
    return [np.array_equal(tflm_invoke(tflm, x), logits) for x, logits in zip(features, reference_logits)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Fidelity:
    clips: int
    agreement: float  # top-1 agreement, float torch vs int8 TFLite (reference kernels)
    flips: int  # clips whose top-1 class int8 changes
    # Wilson score interval of the agreement: on a few hundred clips one flip moves it by ~0.3 points, so a figure
    # near a goal (≥ 99 %) is only meaningful with its uncertainty.
    agreement_ci95: tuple[float, float]
    float_accuracy: float
    int8_accuracy: float
    float_log_loss: float
    int8_log_loss: float
    # Float logits as signal, their difference from the dequantized int8 logits as noise: how far int8 moves the
    # decision, whatever the labels (agreement then depends on how close the float model's top two classes are).
    logit_sqnr_db: float

    @property
    def accuracy_drop_points(self) -> float:
        return 100.0 * (self.float_accuracy - self.int8_accuracy)


def agreement_interval(agreeing: int, clips: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of `agreeing` top-1 agreements in `clips` clips."""
    interval = binomtest(agreeing, clips).proportion_ci(0.95, method="wilson")
    return float(interval.low), float(interval.high)


def fidelity(float_logits: np.ndarray, int8_logits: np.ndarray, output_scale: float, output_zero_point: int,
             labels: np.ndarray) -> Fidelity:
    dequantized = output_scale * (int8_logits.astype(np.float64) - output_zero_point)
    lp_float, lp_int8 = log_softmax(float_logits.astype(np.float64)), log_softmax(dequantized)
    rows = np.arange(len(labels))
    agreeing = int((lp_float.argmax(1) == lp_int8.argmax(1)).sum())
    return Fidelity(
        clips=len(labels),
        agreement=agreeing / len(labels),
        flips=len(labels) - agreeing,
        agreement_ci95=agreement_interval(agreeing, len(labels)),
        float_accuracy=float((lp_float.argmax(1) == labels).mean()),
        int8_accuracy=float((lp_int8.argmax(1) == labels).mean()),
        float_log_loss=float(-lp_float[rows, labels].mean()),
        int8_log_loss=float(-lp_int8[rows, labels].mean()),
        logit_sqnr_db=float(10 * np.log10((float_logits.astype(np.float64) ** 2).sum()
                                          / max(((float_logits - dequantized) ** 2).sum(), 1e-30))),
    )


def layer_sqnr(float_flatbuffer: bytes, int8_flatbuffer: bytes, float_inputs: np.ndarray) -> list[dict]:
    """Per operator output of the int8 model (int8 or int16 activations): SQNR (dB) of its dequantized activations against the float
    model's same-named tensor, both fed the same clips (the int8 model its quantized version)."""
    fl = reference_interpreter(float_flatbuffer, preserve_all_tensors=True)
    q = reference_interpreter(int8_flatbuffer, preserve_all_tensors=True)
    float_by_name = {t["name"]: t["index"] for t in fl.get_tensor_details()}
    in_scale, in_zero = tensor_quantization(q.get_input_details()[0])
    rows: list[dict] = []
    signal: dict[int, float] = {}
    noise: dict[int, float] = {}
    ops = q._get_ops_details()
    details = {t["index"]: t for t in q.get_tensor_details()}
    for x in float_inputs:
        xq = np.clip(np.round(x / in_scale) + in_zero, -128, 127).astype(np.int8)
        invoke(fl, x.astype(np.float32))
        invoke(q, xq)
        for op in ops:
            out = op["outputs"][0]
            detail = details[out]
            if detail["name"] not in float_by_name or detail["dtype"] not in (np.int8, np.int16):
                continue
            reference = fl.get_tensor(float_by_name[detail["name"]]).astype(np.float64)
            scale, zero = tensor_quantization(detail)
            value = scale * (q.get_tensor(out).astype(np.float64) - zero)
            if value.shape != reference.shape:
                continue
            signal[out] = signal.get(out, 0.0) + float((reference ** 2).sum())
            noise[out] = noise.get(out, 0.0) + float(((reference - value) ** 2).sum())
    for i, op in enumerate(ops):
        out = op["outputs"][0]
        if out in signal:
            sqnr = 10 * np.log10(signal[out] / noise[out]) if noise[out] > 0 else float("inf")
            rows.append({"index": i, "op": op["op_name"], "tensor": details[out]["name"],
                         "shape": [int(v) for v in details[out]["shape"]], "sqnr_db": round(float(sqnr), 2)})
    return rows
