"""The int8 flatbuffer as deployed: what the TFLite converter wrote, rewritten where it wastes flash or RAM.

- Per-channel int32 biases lose their quantization parameters: TFLite defines a bias's scale as input scale ×
  weight scale (zero point 0) and both runtimes compute it from those, never read it; the converter stores a
  float32 scale and an int64 zero point per channel (12 B a channel, ≈ 29 KB on the BC-ResNet student).
- SubSpectralNorm's per-(frequency, channel) MUL and ADD constants (1, F, 1, C), piecewise constant over S
  contiguous sub-bands, are stored once per band, (1, S, 1, C): the activation (1, F, T, C) is viewed as
  (1, S, F/S·T, C) by a RESHAPE before the MUL and back after the ADD. NHWC keeps frequency outermost, so the
  view is the same bytes, and the memory plan runs the RESHAPEs in place (TFLM then copies nothing). The int8
  values and scales are the converter's: each element is computed exactly as before.
- Grouped CONV_2Ds whose groups are single channels (filter (C, kh, kw, 1) on a C-channel input), which onnx2tf
  emits for some depthwise convs, become the DEPTHWISE_CONV_2D they are: filter (1, kh, kw, C), the same int8
  values and per-channel scales. The arithmetic is the same; CMSIS-NN has a depthwise kernel, and its conv
  kernel does not take groups.
- Every int8 MUL, SUB and RSQRT whose output TFLite and TFLM would compute differently gets its output scale nudged by
  a few float32 steps (< 10⁻⁴ relative) to one where they agree on every input (all 65,536 operand pairs of a
  MUL): TFLite derives the MUL's multiplier sa·sb/so and the RSQRT's 1/(√si·so) in float32, the TFLM runtime in
  double (mcuasc.convert.fixed_point), and where the two round to different 31-bit multipliers the engines
  disagree by one step on some inputs (both measured on trained BC-ResNet students: an RSQRT of a trained student
  differed on 1 of its 256 inputs and so on about half of all clips). SUBs get the same treatment for the TFLM
  sources a firmware is built from: TFLite and the TFLM runtime derive a SUB's multipliers in double, TFLM's sources
  (tflite-micro 90b983c) in float32 (a student's SUB with 99.999th-percentile ranges was one step off on 3 of its
  65,536 operand pairs, enough to move the emulated Cortex-M4's logits). This is the one rewrite that changes a
  scale; the output check below compares against the converter's model with the nudged scales.
- An offline memory plan (mcuasc.convert.memory_plan) in the metadata, which TFLM uses instead of its online
  planner.
- With int16 activations (TFLite's 16x8 mode, convert --activations int16), before the above: int8 input and output
  around the int16 graph (int8_io: a CAST in front, a QUANTIZE after), int16 MULs and SUBs aligned as int8 ones
  are (where no output scale within reach does it, with the ADD, SUB, MUL or convolution output feeding them moved
  too), and each RSQRT in int8 (rsqrt_in_int8), TFLite's and TFLM's int16 RSQRT kernels computing different results.
Every rewrite keeps the int8 arithmetic as it is: the TFLM runtime must stay bit-identical to the TFLite
reference kernels on the rewritten flatbuffer (the convert tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np

from mcuasc.convert.fixed_point import mul_engines_agree, rsqrt_engines_agree, sub_engines_agree
from mcuasc.convert.memory_plan import METADATA_NAME, MemoryPlan, lifetimes, offline_plan_entry, plan_memory

BUFFER_DATA_ALIGNMENT = 16  # the schema's force_align for constant data, kept when the model is rewritten
# Operator versions of the ops the int16 rewrites add (int8 ↔ int16 QUANTIZE and CAST, RSQRT on int8).
QUANTIZE_VERSION = 3
CAST_VERSION = 1
RSQRT_INT8_VERSION = 2


def tflite_schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


class _AlignedBuffer:
    """Packs a schema BufferT with its data 16-byte aligned, as the TFLite converter writes it (the
    generated object API aligns bytes to 1, which would leave int32 biases and weights unaligned)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):
        schema = tflite_schema()
        data = self.buffer.data
        vector = None
        if data is not None:
            payload = np.asarray(data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), BUFFER_DATA_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            vector = builder.EndVector()
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        if self.buffer.offset:
            schema.BufferAddOffset(builder, self.buffer.offset)
            schema.BufferAddSize(builder, self.buffer.size)
        return schema.BufferEnd(builder)


def drop_bias_quantization(model) -> int:
    """Remove the quantization parameters of per-channel int32 (int64 with int16 activations) bias tensors;
    returns how many."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    biases = set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D,
                       schema.BuiltinOperator.FULLY_CONNECTED) and len(op.inputs) > 2 and op.inputs[2] >= 0:
            biases.add(op.inputs[2])
    dropped = 0
    for i in sorted(biases):
        tensor = graph.tensors[i]
        q = tensor.quantization
        if tensor.type in (schema.TensorType.INT32, schema.TensorType.INT64) and q is not None and q.scale is not None and len(q.scale) > 1:
            tensor.quantization = None
            dropped += 1
    return dropped


# CAST: mcuasc places it only between an int8 and an int16 tensor of one scale, where it is exact.
_SAME_SCALE_OPS = ("RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "PADV2", "SQUEEZE", "CAST")


def _tied_tensors(model, i: int) -> list[int]:
    """Tensor i and the outputs of the ops after it that must keep their input's scale, in graph order."""
    tied = [i]
    for op in model.subgraphs[0].operators:
        if _op_name(model, op) in _SAME_SCALE_OPS and int(op.inputs[0]) == i:
            tied += _tied_tensors(model, int(op.outputs[0]))
    return tied


def _set_scale(model, i: int, value: float) -> list[int]:
    """Set the per-tensor scale of tensor i and of the tensors tied to it; returns the tensors changed."""
    tied = _tied_tensors(model, i)
    for t in tied:
        model.subgraphs[0].tensors[t].quantization.scale = np.array([value], dtype=np.float32)
    return tied


def _rescale_biases(model, i: int, factor: float) -> None:
    """A bias is stored in steps of input scale × weight scale: after tensor i's scale was divided by `factor`,
    the convolutions reading it get their biases in the new steps (rounded, as the converter rounds them)."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    types = {schema.TensorType.INT32: "<i4", schema.TensorType.INT64: "<i8"}
    for op in graph.operators:
        if (_op_name(model, op) in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and int(op.inputs[0]) == i
                and len(op.inputs) > 2 and op.inputs[2] >= 0):
            bias = graph.tensors[int(op.inputs[2])]
            buffer = model.buffers[bias.buffer]
            values = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=types[bias.type])
            rescaled = np.round(values.astype(np.float64) * factor).astype(types[bias.type])
            buffer.data = np.frombuffer(rescaled.tobytes(), dtype=np.uint8)


# Producers whose output scale may move: both engines derive their arithmetic from it in double, or (MUL, SUB) it is
# one of the scales align_multipliers checks, and their own agreement is checked again when it moves.
_FREE_SCALE_PRODUCERS = ("ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# The ops whose engines' agreement align_multipliers checks (RSQRT in int8 only).
_ALIGNED_OPS = ("MUL", "RSQRT", "SUB")


def align_multipliers(model, search: int = 4096, input_search: int = 16384, output_search: int = 64) -> tuple[dict[str, int], list[int]]:
    """Nudge the output scale of each int8 (or int16) MUL and SUB and int8 RSQRT that TFLite and TFLM would compute
    differently until they agree on every input (MUL, SUB: every operand pair); returns how many ops were aligned,
    per op, and the operators for which no nearby scale does. In graph order, so that an op reading a nudged tensor
    is checked with its new scale. Ops that must keep their input's scale (pools, reshapes, pads, CASTs) after a
    nudged tensor follow it.

    An int16 MUL or SUB must get its multipliers from float32 and double alike; when a product or ratio of its input
    scales has rounded differently in the two, no output scale within reach does that. Then one of its inputs, if an
    ADD, SUB, MUL or convolution wrote it, moves too (up to `input_search` float32 steps, 0.2 % at most, with the
    output up to `output_search`), as long as every earlier checked op whose arithmetic that scale enters (its
    producer too) still agrees. An int16 SUB of two MULs' outputs needs both MULs' and its own multipliers equal:
    one input scale in about 16,000 does it, hence the long search."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    tensors, operators = graph.tensors, graph.operators
    moved, unaligned = dict.fromkeys(_ALIGNED_OPS, 0), []
    bits_of = {schema.TensorType.INT8: 8, schema.TensorType.INT16: 16}
    names = [_op_name(model, op) for op in operators]
    producer = {int(o): k for k, op in enumerate(operators) for o in op.outputs}
    graph_ends = {int(i) for i in (*graph.inputs, *graph.outputs)}

    def quantization(i: int) -> tuple[float, int]:
        return float(tensors[i].quantization.scale[0]), int(tensors[i].quantization.zeroPoint[0])

    def per_tensor(i: int) -> bool:
        q = tensors[i].quantization
        return q is not None and q.scale is not None and len(q.scale) == 1

    def bits(k: int) -> int | None:
        """The op's activation width if it is a MUL, SUB or int8 RSQRT mcuasc can check, else None."""
        if names[k] not in _ALIGNED_OPS:
            return None
        ends = [int(i) for i in (*operators[k].inputs, *operators[k].outputs)]
        types = {tensors[i].type for i in ends}
        if len(types) != 1 or not types <= set(bits_of) or not all(per_tensor(i) for i in ends):
            return None
        width = bits_of[types.pop()]
        return None if names[k] == "RSQRT" and width != 8 else width  # int16 RSQRTs run in int8 (rsqrt_in_int8)

    def agrees(k: int) -> bool:
        op = operators[k]
        if names[k] == "MUL":
            return mul_engines_agree(quantization(int(op.inputs[0])), quantization(int(op.inputs[1])),
                                     quantization(int(op.outputs[0])), bits(k))
        if names[k] == "SUB":
            return sub_engines_agree(quantization(int(op.inputs[0])), quantization(int(op.inputs[1])),
                                     quantization(int(op.outputs[0])), bits(k))
        return rsqrt_engines_agree(quantization(int(op.inputs[0])), quantization(int(op.outputs[0])))

    def nearby(scale: float, steps: int):
        up = down = np.float32(scale)
        for _ in range(steps):
            up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
            yield float(up)
            yield float(down)

    def nudge(i: int, accept, steps: int, tied: bool = True) -> bool:
        """Move tensor i's scale to the nearest one `accept`s; if none within `steps`, leave it. With tied=False the
        tensors tied to its scale follow only the scale accepted (when `accept` reads tensor i alone)."""
        original = quantization(i)[0]
        for candidate in nearby(original, steps):
            if tied:
                _set_scale(model, i, candidate)
            else:
                tensors[i].quantization.scale = np.array([candidate], dtype=np.float32)
            if accept():
                _set_scale(model, i, candidate)
                return True
        _set_scale(model, i, original)
        return False

    def depending(i: int, before: int) -> list[int]:
        """The checkable ops before operator `before` whose arithmetic tensor i's scale enters: its readers (or a
        tensor's tied to its scale), and its producer if that is one of them."""
        tied = set(_tied_tensors(model, i))
        return [k for k, op in enumerate(operators[:before])
                if bits(k) and (tied & {int(t) for t in op.inputs} or i in {int(t) for t in op.outputs})]

    for k in range(len(operators)):
        if bits(k) is None or agrees(k):
            continue
        out = int(operators[k].outputs[0])
        if nudge(out, lambda: agrees(k), search, tied=False):
            moved[names[k]] += 1
            continue
        free_inputs = [] if names[k] == "RSQRT" else [
            i for i in dict.fromkeys(int(t) for t in operators[k].inputs)
            if i not in graph_ends and i in producer and names[producer[i]] in _FREE_SCALE_PRODUCERS]
        for i in free_inputs:
            earlier = depending(i, k)
            if nudge(i, lambda: all(agrees(r) for r in earlier) and nudge(out, lambda: agrees(k), output_search, tied=False),
                     input_search):
                moved[names[k]] += 1
                break
        else:
            unaligned.append(k)
    return moved, unaligned


def int8_io(model, output_quantization: tuple[float, int]) -> None:
    """Give a model with int16 activations int8 input and output, so that the front end's int8 features and every
    stage after the model stay as they are.

    In front: a CAST of the int8 features to int16, exact when the int8 quantization is symmetric with the int16
    tensor taking its scale (TFLite cannot requantize int8 to int16, and int16 activations have zero point 0);
    the int8 scale covers the range the converter calibrated for the int16 input, ±32767 of its steps. The first
    operators derive their multipliers from the tensors' scales, so nothing else changes. After the graph: a
    QUANTIZE (int16 → int8) to `output_quantization`, the int8 conversion's own for the same model."""
    graph = model.subgraphs[0]
    (inner_input,), (inner_output,) = graph.inputs, graph.outputs
    int16_input = graph.tensors[inner_input].quantization
    input_quantization = (float(np.float32(int16_input.scale[0] * 32767 / 127)), 0)

    outer_input, outer_output = _int8_twin(model, inner_input, input_quantization), _int8_twin(model, inner_output, output_quantization)
    old_scale = float(int16_input.scale[0])
    for i in _set_scale(model, inner_input, input_quantization[0]):
        _rescale_biases(model, i, old_scale / input_quantization[0])
    graph.operators = [_cast_to_int16(model, outer_input, inner_input), *graph.operators,
                       _quantize(model, inner_output, outer_output)]
    graph.inputs, graph.outputs = np.array([outer_input], dtype=np.int32), np.array([outer_output], dtype=np.int32)
    renamed = {inner_input: outer_input, inner_output: outer_output}
    for signature in model.signatureDefs or []:
        for entry in (*(signature.inputs or []), *(signature.outputs or [])):
            entry.tensorIndex = renamed.get(entry.tensorIndex, entry.tensorIndex)


def with_int8_io(int16_flatbuffer: bytes, int8_flatbuffer: bytes) -> bytes:
    """The 16x8 conversion of a model with int8 input and output (int8_io) and its RSQRTs in int8 (rsqrt_in_int8);
    the output takes the int8 conversion's quantization of the same model."""
    schema = tflite_schema()
    int8_model = schema.ModelT.InitFromPackedBuf(int8_flatbuffer, 0)
    output = int8_model.subgraphs[0].tensors[int8_model.subgraphs[0].outputs[0]].quantization
    model = schema.ModelT.InitFromPackedBuf(int16_flatbuffer, 0)
    int8_io(model, (float(output.scale[0]), int(output.zeroPoint[0])))
    rsqrt_in_int8(model)
    return pack_model(model, len(int16_flatbuffer))


def rsqrt_in_int8(model) -> int:
    """Run each int16 RSQRT in int8: TFLite's and TFLM's int16 RSQRT kernels differ (on about half of all int16
    inputs, whatever the scales), their int8 ones agree. A QUANTIZE (int16 → int8, the input's calibrated range
    [0, max] on 256 steps) before it, a CAST (int8 → int16) after it, exact with a symmetric int8 output whose scale
    the int16 tensor takes (its readers derive their multipliers from it). RSQRT's operands are BC-ResNet's
    per-frequency variances, (1, F, 1, 1): the int8 island costs nothing in memory. Returns how many."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    rsqrt = [op for op in graph.operators if _op_name(model, op) == "RSQRT"
             and graph.tensors[int(op.inputs[0])].type == schema.TensorType.INT16]
    if not rsqrt:
        return 0
    operators = []
    for op in graph.operators:
        if not any(op is r for r in rsqrt):
            operators.append(op)
            continue
        x, y = int(op.inputs[0]), int(op.outputs[0])
        x_max = float(graph.tensors[x].quantization.scale[0]) * 32767
        y_scale = float(np.float32(float(graph.tensors[y].quantization.scale[0]) * 32767 / 127))
        x8 = _int8_twin(model, x, (float(np.float32(x_max / 255)), -128))
        y8 = _int8_twin(model, y, (y_scale, 0))
        _set_scale(model, y, y_scale)
        operators += [_quantize(model, x, x8),
                      _unary(model, schema.BuiltinOperator.RSQRT, RSQRT_INT8_VERSION, x8, y8),
                      _cast_to_int16(model, y8, y)]
    graph.operators = operators
    return len(rsqrt)


def _int8_twin(model, i: int, quantization: tuple[float, int]) -> int:
    """A new int8 activation tensor shaped like tensor i, with this per-tensor (scale, zero point)."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    tensor = schema.TensorT()
    tensor.shape = np.array(graph.tensors[i].shape, dtype=np.int32)
    signature = graph.tensors[i].shapeSignature
    tensor.shapeSignature = None if signature is None else np.array(signature, dtype=np.int32)
    tensor.type, tensor.name = schema.TensorType.INT8, graph.tensors[i].name + b"_int8"
    tensor.quantization = _per_tensor(*quantization)
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _unary(model, builtin: int, version: int, source: int, target: int, options_type: int = 0, options=None):
    """A new one-input operator (not yet placed in the graph's operator list)."""
    op = tflite_schema().OperatorT()
    op.opcodeIndex = _operator_code(model, builtin, version)
    op.inputs, op.outputs = np.array([source], dtype=np.int32), np.array([target], dtype=np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _quantize(model, source: int, target: int):
    schema = tflite_schema()
    return _unary(model, schema.BuiltinOperator.QUANTIZE, QUANTIZE_VERSION, source, target,
                  schema.BuiltinOptions.QuantizeOptions, schema.QuantizeOptionsT())


def _cast_to_int16(model, source: int, target: int):
    schema = tflite_schema()
    options = schema.CastOptionsT()
    options.inDataType, options.outDataType = schema.TensorType.INT8, schema.TensorType.INT16
    return _unary(model, schema.BuiltinOperator.CAST, CAST_VERSION, source, target, schema.BuiltinOptions.CastOptions, options)


def _per_tensor(scale: float, zero_point: int):
    quantization = tflite_schema().QuantizationParametersT()
    quantization.scale = np.array([scale], dtype=np.float32)
    quantization.zeroPoint = np.array([zero_point], dtype=np.int64)
    return quantization


def _operator_code(model, builtin: int, version: int) -> int:
    """The index of the model's operator code for `builtin`, added (at `version`) if the model has none yet."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = tflite_schema().OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def grouped_convs_as_depthwise(model) -> int:
    """Rewrite CONV_2Ds with one input channel per group as DEPTHWISE_CONV_2D (multiplier 1); returns how many."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    tensors, buffers = graph.tensors, model.buffers
    convs = [op for op in graph.operators if _op_name(model, op) == "CONV_2D"]

    def eligible(op) -> bool:
        activation, filter_ = tensors[int(op.inputs[0])], tensors[int(op.inputs[1])]
        out_channels, _, _, in_per_group = (int(v) for v in filter_.shape)
        return (in_per_group == 1 and out_channels == int(activation.shape[3]) > 1 and filter_.type == schema.TensorType.INT8
                and buffers[filter_.buffer].data is not None)

    # A filter tensor (or its buffer) may serve several convs (the converter shares equal constants): rewrite it
    # only when every conv reading it can become depthwise, and transpose its data once.
    readers: dict[int, list] = {}
    for op in graph.operators:
        for position, i in enumerate(op.inputs):
            readers.setdefault(int(i), []).append((op, position))
    filters = {int(op.inputs[1]) for op in convs if eligible(op)}
    filters = {f for f in filters if all(position == 1 and any(r is c for c in convs) and eligible(r) for r, position in readers[f])
               and sum(1 for t in tensors if t.buffer == tensors[f].buffer) == 1}
    if not filters:
        return 0
    # Version 3: int8 with per-channel quantization (TFLite's op_version.cc).
    depthwise_code = _operator_code(model, schema.BuiltinOperator.DEPTHWISE_CONV_2D, version=3)
    for f in filters:
        filter_ = tensors[f]
        out_channels, kh, kw, _ = (int(v) for v in filter_.shape)
        values = np.frombuffer(np.asarray(buffers[filter_.buffer].data, dtype=np.uint8).tobytes(), dtype=np.int8)
        values = values.reshape(out_channels, kh, kw).transpose(1, 2, 0)
        buffers[filter_.buffer].data = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8)
        filter_.shape, filter_.shapeSignature = np.array([1, kh, kw, out_channels], dtype=np.int32), None
        if filter_.quantization is not None:
            filter_.quantization.quantizedDimension = 3
    rewritten = 0
    for op in convs:
        if int(op.inputs[1]) not in filters:
            continue
        conv = op.builtinOptions
        options = schema.DepthwiseConv2DOptionsT()
        options.padding, options.strideW, options.strideH = conv.padding, conv.strideW, conv.strideH
        options.depthMultiplier, options.fusedActivationFunction = 1, conv.fusedActivationFunction
        options.dilationWFactor, options.dilationHFactor = conv.dilationWFactor, conv.dilationHFactor
        op.opcodeIndex, op.builtinOptionsType, op.builtinOptions = depthwise_code, schema.BuiltinOptions.DepthwiseConv2DOptions, options
        rewritten += 1
    return rewritten


def _op_name(model, op) -> str:
    schema = tflite_schema()
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == builtin and not k.startswith("_"))


def _bands(values: np.ndarray) -> int | None:
    """Fewest contiguous frequency bands over which a (1, F, 1, C) constant is piecewise constant (< F)."""
    frequencies = values.shape[1]
    for bands in range(1, frequencies):
        if frequencies % bands == 0:
            banded = values.reshape(bands, frequencies // bands, -1)
            if np.array_equal(banded, np.broadcast_to(banded[:, :1], banded.shape)):
                return bands
    return None


def store_band_constants(model) -> int:
    """Rewrite chains of MUL/ADD by piecewise-constant (1, F, 1, C) constants to work on the (1, S, F/S·T, C)
    view of their activation, with (1, S, 1, C) constants; returns how many constants shrank."""
    schema = tflite_schema()
    graph = model.subgraphs[0]
    buffers, tensors = model.buffers, graph.tensors
    consumers: dict[int, list[int]] = {}
    for k, op in enumerate(graph.operators):
        for i in op.inputs:
            consumers.setdefault(int(i), []).append(k)
    item = {schema.TensorType.INT8: np.int8, schema.TensorType.INT16: np.int16, schema.TensorType.INT32: np.int32,
            schema.TensorType.FLOAT32: np.float32}

    def constant_values(i: int) -> np.ndarray | None:
        data = buffers[tensors[i].buffer].data
        if data is None or len(data) == 0 or tensors[i].type not in item:
            return None
        return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=item[tensors[i].type]).reshape(tensors[i].shape)

    # Each eligible op: (activation input, constant input, bands).
    eligible: dict[int, tuple[int, int, int]] = {}
    for k, op in enumerate(graph.operators):
        if _op_name(model, op) not in ("MUL", "ADD") or len(op.inputs) != 2:
            continue
        for position in (0, 1):
            activation, constant = int(op.inputs[1 - position]), int(op.inputs[position])
            values = constant_values(constant)
            shape = list(tensors[activation].shape) if tensors[activation].shape is not None else []  # None: a scalar
            if values is None or constant_values(activation) is not None or len(shape) != 4 or values.ndim != 4:
                continue
            if values.shape[0] != 1 or values.shape[2] != 1 or values.shape[1] != shape[1] or values.shape[3] != shape[3]:
                continue
            bands = _bands(values)
            shared = sum(1 for t in tensors if t.buffer == tensors[constant].buffer) > 1 or len(consumers[constant]) > 1
            if bands is not None and not shared and tensors[int(op.outputs[0])].shape.tolist() == shape:
                eligible[k] = (activation, constant, bands)
            break
    if not eligible:
        return 0
    reshape_code = _operator_code(model, schema.BuiltinOperator.RESHAPE, version=1)
    shape_tensors: dict[tuple[int, ...], int] = {}

    def new_tensor(like: int, shape: list[int], name: str, data: bytes | None = None, type_=None) -> int:
        buffer = schema.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(data, dtype=np.uint8)
        buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape, tensor.name, tensor.buffer = np.array(shape, dtype=np.int32), name, len(buffers) - 1
        tensor.type = tensors[like].type if type_ is None else type_
        tensor.quantization = tensors[like].quantization if type_ is None else None
        tensors.append(tensor)
        return len(tensors) - 1

    def reshape(source: int, target: int) -> object:
        shape = tuple(int(v) for v in tensors[target].shape)
        if shape not in shape_tensors:
            shape_tensors[shape] = new_tensor(source, [len(shape)], f"mcuasc/band_view_shape_{len(shape_tensors)}",
                                              np.array(shape, dtype="<i4").tobytes(), schema.TensorType.INT32)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = reshape_code, np.array([source, shape_tensors[shape]], dtype=np.int32), np.array([target], dtype=np.int32)
        op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        op.builtinOptions = schema.ReshapeOptionsT()
        op.builtinOptions.newShape = np.array(shape, dtype=np.int32)
        return op

    full_shapes = {i: [int(v) for v in tensors[i].shape] for i, _, _ in eligible.values()}
    operators, banded_view = [], {}  # banded_view: tensor → (its (1, S, F/S·T, C) twin, S)
    for k, op in enumerate(graph.operators):
        if k not in eligible:
            operators.append(op)
            continue
        activation, constant, bands = eligible[k]
        _, frequencies, frames, channels = full_shapes[activation]
        view_shape = [1, bands, frequencies // bands * frames, channels]
        if activation in banded_view and banded_view[activation][1] == bands:
            source = banded_view[activation][0]
        else:
            source = new_tensor(activation, view_shape, tensors[activation].name.decode() + "/bands")
            operators.append(reshape(activation, source))
        values = constant_values(constant).reshape(bands, frequencies // bands, channels)[:, 0]
        buffers[tensors[constant].buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
        tensors[constant].shape = np.array([1, bands, 1, channels], dtype=np.int32)
        tensors[constant].shapeSignature = None
        output = int(op.outputs[0])
        # Inside a chain (the next banded op its only reader) the output is the view itself; at the chain's end
        # a RESHAPE restores the full view for the other readers.
        readers = consumers.get(output, [])
        chained = (len(readers) == 1 and readers[0] in eligible and eligible[readers[0]][0] == output
                   and eligible[readers[0]][2] == bands and output not in graph.outputs)
        if chained:
            tensors[output].shape, tensors[output].shapeSignature = np.array(view_shape, dtype=np.int32), None
            banded_output = output
        else:
            banded_output = new_tensor(output, view_shape, tensors[output].name.decode() + "/bands")
        op.inputs = np.array([source if int(i) == activation else int(i) for i in op.inputs], dtype=np.int32)
        op.outputs = np.array([banded_output], dtype=np.int32)
        operators.append(op)
        banded_view[output] = (banded_output, bands)
        if not chained:
            operators.append(reshape(banded_output, output))
    graph.operators = operators
    return len(eligible)


def pack_model(model, size_hint: int) -> bytes:
    model.buffers = [_AlignedBuffer(b) for b in model.buffers]
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@dataclass(frozen=True)
class Finalized:
    flatbuffer: bytes
    memory_plan: MemoryPlan
    bias_tensors_without_quantization: int
    band_constants: int  # SubSpectralNorm constants stored per band
    depthwise_convs: int  # grouped CONV_2Ds rewritten as DEPTHWISE_CONV_2D
    mul_scales_aligned: int  # MUL output scales nudged so that TFLite and TFLM compute the same results
    rsqrt_scales_aligned: int  # the same for int8 RSQRTs
    sub_scales_aligned: int  # the same for SUBs (TFLM's sources derive their multipliers in float32)
    ops_unaligned: tuple[int, ...]  # MUL, SUB or RSQRT operators (converter's indices) for which no nearby scale does


def _check_same_outputs(original: bytes, rewritten: bytes, inputs: int = 3) -> None:
    """The rewrites must not change a single output value (TFLite reference kernels, seeded random inputs)."""
    from mcuasc.convert import analysis

    before, after = analysis.reference_interpreter(original), analysis.reference_interpreter(rewritten)
    detail = before.get_input_details()[0]
    rng = np.random.default_rng(0)
    info = np.iinfo(detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer) else None
    for _ in range(inputs):
        shape = tuple(int(v) for v in detail["shape"][1:])
        x = (rng.integers(info.min, info.max + 1, shape) if info else rng.normal(size=shape)).astype(detail["dtype"])
        if not np.array_equal(analysis.invoke(before, x), analysis.invoke(after, x)):
            raise RuntimeError("mcuasc's flatbuffer rewrite changed the model's outputs (a bug in mcuasc.convert.finalize)")


def finalize(flatbuffer: bytes) -> Finalized:
    """The deployed flatbuffer, checked to compute exactly what the converter's did (with MUL, SUB and RSQRT scales
    aligned)."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    if len(model.subgraphs) != 1:
        raise ValueError("mcuasc finalizes single-subgraph models only")
    aligned, unaligned = align_multipliers(model)
    if any(aligned.values()):
        flatbuffer = pack_model(model, len(flatbuffer))
        model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    biases = drop_bias_quantization(model)
    depthwise = grouped_convs_as_depthwise(model)
    bands = store_band_constants(model)
    plan = plan_memory(lifetimes(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(offline_plan_entry(model, plan).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = METADATA_NAME
    metadata.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [metadata]
    rewritten = pack_model(model, len(flatbuffer))
    _check_same_outputs(flatbuffer, rewritten)
    return Finalized(rewritten, plan, biases, bands, depthwise, aligned["MUL"], aligned["RSQRT"], aligned["SUB"],
                     tuple(unaligned))


def without_memory_plan(flatbuffer: bytes) -> bytes:
    """The same model without its offline memory plan: for runs that keep every intermediate tensor (the plan lets
    in-place ops overwrite their inputs, and TFLM's preserve-all mode cannot honour it)."""
    model = tflite_schema().ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = [m.name for m in (model.metadata or [])]
    if METADATA_NAME.encode() not in names and METADATA_NAME not in names:
        return flatbuffer
    model.metadata = [m for m in model.metadata if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    return pack_model(model, len(flatbuffer))
