"""int8 activation ranges narrowed from the calibration set's min/max to a percentile (ConvertOptions).

The TFLite converter sets each activation's int8 range to the min and max it saw on the calibration set, so one
rare extreme value stretches the 256 steps over a range most values never reach. Narrowing every intermediate
range to the `percentile`-th percentile of the values seen (clipping the few beyond it) spends the steps where the
values are. How far to narrow is a trade: the 99.99th raised the BC-ResNet student's logit SQNR by ≈ 5 dB but
clipped large activations a decision rests on (agreement with float no better, int8 accuracy lower); the 99.999th
clips only each large tensor's rarest values and cut the student's flips against float by 25-40 % on held-out clips
(benchmarks/fidelity_budget.py, README Convert); it is convert's default. Tensors with fewer calibration values than
the tail holds keep min/max. The model's input (the front end's output, never clipped on
calibration data) and output (the logits, which clipping could tie) keep min/max. The converter's own quantizer then
takes the narrowed ranges as calibrated, so biases, fixed-scale ops (LOGISTIC) and ops that share a scale (pools,
RESHAPE) stay consistent as always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuasc.convert.finalize import pack_model, tflite_schema


@dataclass(frozen=True)
class RangeReport:
    percentile: float
    tensors: int  # intermediate activations with a calibrated range
    narrowed: int  # of which the percentile range is narrower than min/max (those with fewer values than 1/tail keep it)
    median_width_ratio: float  # median over those tensors of narrowed width / min-max width


class _Tails:
    """The k + 1 smallest and largest values of a stream of arrays, k a fixed count: enough for an exact
    percentile of the whole stream without keeping it."""

    def __init__(self, keep: int):
        self.keep = keep
        self.low = np.empty(0, np.float32)
        self.high = np.empty(0, np.float32)

    def add(self, values: np.ndarray) -> None:
        def smallest(v: np.ndarray) -> np.ndarray:
            return v if v.size <= self.keep else np.partition(v, self.keep - 1)[: self.keep]

        self.low = smallest(np.concatenate([self.low, smallest(values)]))
        self.high = -smallest(np.concatenate([-self.high, smallest(-values)]))


def narrow_activation_ranges(calibrated: bytes, calibration: np.ndarray, percentile: float) -> tuple[bytes, RangeReport]:
    """`calibrated`: the converter's float model with min/max per activation (TFLiteConverter with
    _experimental_calibrate_only); `calibration`: the clips it was calibrated on, (clips, *input shape).
    Returns the same model with every intermediate activation's range narrowed to [p_low, p_high] of the values
    the float model computes on those clips (p_low = 100 − percentile), never wider than min/max."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = tflite_schema().ModelT.InitFromPackedBuf(calibrated, 0)
    graph = model.subgraphs[0]
    boundary = set(graph.inputs) | set(graph.outputs)
    activations = [i for i, tensor in enumerate(graph.tensors)
                   if i not in boundary and tensor.quantization is not None and tensor.quantization.min is not None
                   and len(tensor.quantization.min) == 1]
    interpreter = Interpreter(model_content=calibrated, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    tail_fraction = (100.0 - percentile) / 100.0
    # Values strictly beyond the percentile: k of the stream's N; the (k+1)-th largest is the bound.
    beyond = {i: int(tail_fraction * math.prod(int(v) for v in graph.tensors[i].shape) * len(calibration)) for i in activations}
    ranged = [i for i in activations if beyond[i] > 0]  # the rest keep min/max exactly (small tensors, percentile 100)
    tails = {i: _Tails(beyond[i] + 1) for i in ranged}
    input_index = interpreter.get_input_details()[0]["index"]
    for clip in calibration:
        interpreter.set_tensor(input_index, clip[None].astype(np.float32))
        interpreter.invoke()
        for i in ranged:
            tails[i].add(interpreter.get_tensor(i).ravel())
    ratios = []
    for i in ranged:
        quantization = graph.tensors[i].quantization
        lowest, highest = float(quantization.min[0]), float(quantization.max[0])
        low = max(lowest, float(tails[i].low.max()))
        high = min(highest, float(tails[i].high.min()))
        if highest - lowest <= 0 or high <= low:
            continue
        if (low, high) != (lowest, highest):
            ratios.append((high - low) / (highest - lowest))
        quantization.min, quantization.max = [low], [high]
    report = RangeReport(percentile=percentile, tensors=len(activations), narrowed=len(ratios),
                         median_width_ratio=float(np.median(ratios)) if ratios else 1.0)
    return pack_model(model, len(calibrated)), report
