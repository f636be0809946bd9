"""When two results differ, say where first: the first feature (frame, band, channel) for the front ends, the
first operator whose output tensor differs for the interpreters.

The operator search reruns both engines on the same int8 input with every intermediate tensor kept
(TFLite's preserve_all_tensors, TFLM's kPreserveAllTensors) and walks the operators in execution order, as
TFLM's layer-by-layer debugger does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mcuasc.convert import analysis
from mcuasc.convert.fixed_point import int8_mul_formula, int8_rsqrt_formula, int8_sub_formula

# The ops whose int8 formula mcuasc computes itself, to say which engine follows it.
_INT8_FORMULAS = {"MUL": int8_mul_formula, "RSQRT": int8_rsqrt_formula, "SUB": int8_sub_formula}


@dataclass(frozen=True)
class FeatureDivergence:
    frame: int
    band: int
    channel: int
    numpy_value: int
    c_value: int
    differing: int  # values that differ in the clip's features
    total: int
    max_abs_difference: int

    def describe(self) -> str:
        return (f"features differ first at frame {self.frame}, band {self.band}, channel {self.channel} "
                f"(numpy {self.numpy_value}, C {self.c_value}); {self.differing} of {self.total} values differ, "
                f"by at most {self.max_abs_difference}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OperatorDivergence:
    operator_index: int  # in execution order
    op: str
    tensor: str
    tensor_index: int
    shape: tuple[int, ...]
    differing: int
    total: int
    max_abs_difference: int
    # Which engine follows TFLite's integer arithmetic for this op on these inputs ("tflite_ref", "tflm",
    # "both", "neither"), when mcuasc knows the op's formula; None otherwise.
    follows_integer_formula: str | None = None

    def describe(self) -> str:
        text = (f"first divergent operator #{self.operator_index} {self.op}, output tensor '{self.tensor}' "
                f"{list(self.shape)}: {self.differing} of {self.total} elements differ, by at most {self.max_abs_difference}")
        verdicts = {"tflm": "TFLM follows TFLite's integer formula for it, the reference kernel does not",
                    "tflite_ref": "the reference kernel follows TFLite's integer formula for it, TFLM does not",
                    "neither": "neither engine follows TFLite's integer formula for it"}
        return text + (f" ({verdicts[self.follows_integer_formula]})" if self.follows_integer_formula in verdicts else "")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data


def first_feature_difference(numpy_features: np.ndarray, c_features: np.ndarray) -> FeatureDivergence | None:
    """Features are (mels, frames, channels); 'first' is in time order, then band, then channel."""
    a, b = numpy_features.astype(np.int32), c_features.astype(np.int32)
    differs = a != b
    if not differs.any():
        return None
    frame_major = np.argwhere(differs.transpose(1, 0, 2))
    frame, band, channel = (int(v) for v in frame_major[0])
    return FeatureDivergence(frame, band, channel, int(a[band, frame, channel]), int(b[band, frame, channel]),
                             int(differs.sum()), int(differs.size), int(np.abs(a - b).max()))


def _tflm_preserving(flatbuffer: bytes, arena_bytes: int):
    from tflite_micro.python.tflite_micro import runtime

    # Nothing shares memory when every tensor is kept: grow the arena until it allocates.
    size = arena_bytes
    while True:
        try:
            with analysis.captured_native_output():
                return runtime.Interpreter.from_bytes(flatbuffer, arena_size=size,
                                                      intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        except Exception:
            if size > 1 << 30:
                raise
            size *= 2


class OperatorComparer:
    """Both engines with every intermediate tensor kept; built on the first mismatch, then reused."""

    def __init__(self, reference_flatbuffer: bytes, tflm_flatbuffer: bytes, arena_bytes: int):
        from mcuasc.convert.finalize import without_memory_plan

        # Every tensor kept: no offline plan letting in-place ops overwrite what is compared.
        reference_flatbuffer, tflm_flatbuffer = without_memory_plan(reference_flatbuffer), without_memory_plan(tflm_flatbuffer)
        self.reference = analysis.reference_interpreter(reference_flatbuffer, preserve_all_tensors=True)
        tensor_bytes = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in self.reference.get_tensor_details())
        self.tflm = _tflm_preserving(tflm_flatbuffer, max(arena_bytes, 2 * tensor_bytes + (64 << 10)))
        self.ops = self.reference._get_ops_details()
        self.tensors = {t["index"]: t for t in self.reference.get_tensor_details()}

    def first_divergence(self, x: np.ndarray) -> OperatorDivergence | None:
        analysis.invoke(self.reference, x)
        analysis.tflm_invoke(self.tflm, x)
        for position, op in enumerate(self.ops):
            for tensor_index in op["outputs"]:
                ours = self.reference.get_tensor(tensor_index)
                theirs = np.asarray(self.tflm.GetTensor(tensor_index, 0)["tensor_data"]).reshape(ours.shape)
                differs = ours != theirs
                if differs.any():
                    detail = self.tensors[tensor_index]
                    delta = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
                    return OperatorDivergence(position, op["op_name"], detail["name"], int(tensor_index),
                                              tuple(int(v) for v in ours.shape), int(differs.sum()), int(differs.size),
                                              int(delta.max()), self._arbitrate(op, ours, theirs))
        return None

    def _arbitrate(self, op: dict, reference_output: np.ndarray, tflm_output: np.ndarray) -> str | None:
        """Which engine computes what TFLite's integer formula says, for the ops whose formula mcuasc knows."""
        inputs = [self.tensors[i] for i in op["inputs"]]
        if op["op_name"] not in _INT8_FORMULAS or any(t["dtype"] != np.int8 for t in inputs) or reference_output.dtype != np.int8:
            return None
        operands = [self.reference.get_tensor(t["index"]) for t in inputs]
        quant = [analysis.tensor_quantization(t) for t in (*inputs, self.tensors[op["outputs"][0]])]
        expected = _INT8_FORMULAS[op["op_name"]](*operands, *quant).reshape(reference_output.shape)
        reference_ok, tflm_ok = np.array_equal(expected, reference_output), np.array_equal(expected, tflm_output)
        return {(True, True): "both", (True, False): "tflite_ref", (False, True): "tflm"}.get((reference_ok, tflm_ok), "neither")
