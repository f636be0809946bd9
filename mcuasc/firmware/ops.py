"""The TFLM op resolver a model needs: each TFLite builtin op in the flatbuffer → its MicroMutableOpResolver method.

Only ops whose TFLM registration mcuasc knows are accepted; anything else is refused by name before any file is
written, so the user learns it here and not from a linker error.
"""

from __future__ import annotations

from mcuasc.errors import InputError

RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ARG_MAX": "AddArgMax", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "CAST": "AddCast", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "HARD_SWISH": "AddHardSwish", "L2_NORMALIZATION": "AddL2Normalization", "LEAKY_RELU": "AddLeakyRelu",
    "LOG": "AddLog", "LOGISTIC": "AddLogistic", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "RSQRT": "AddRsqrt", "SHAPE": "AddShape", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
}


def resolver_methods(ops: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(op, method) for each distinct op, in first-use order; an InputError names ops TFLM cannot register."""
    distinct = list(dict.fromkeys(ops))
    unknown = [op for op in distinct if op not in RESOLVER_METHODS]
    if unknown:
        raise InputError(f"the model uses {', '.join(unknown)}, which mcuasc cannot register with TFLM's op resolver; "
                         "change the model's layers and reconvert.")
    return [(op, RESOLVER_METHODS[op]) for op in distinct]
