"""The int8 flatbuffer as deployed: what the TFLite converter wrote, rewritten where it wastes flash or RAM.

- Per-channel int32 biases lose their quantization parameters: TFLite defines a bias's scale as input scale ×
  weight scale (zero point 0) and both runtimes compute it from those, never read it; the converter stores a
  float32 scale and an int64 zero point per channel (12 B a channel, ≈ 29 KB on the BC-ResNet student).
- SubSpectralNorm's per-(frequency, channel) MUL and ADD constants (1, F, 1, C), piecewise constant over S
  contiguous sub-bands, are stored once per band, (1, S, 1, C): the activation (1, F, T, C) is viewed as
  (1, S, F/S·T, C) by a RESHAPE before the MUL and back after the ADD. NHWC keeps frequency outermost, so the
  view is the same bytes, and the memory plan runs the RESHAPEs in place (TFLM then copies nothing). The int8
  values and scales are the converter's: each element is computed exactly as before.
- An offline memory plan (mcuasc.convert.memory_plan) in the metadata, which TFLM uses instead of its online
  planner.
Every rewrite keeps the int8 arithmetic as it is: the TFLM runtime must stay bit-identical to the TFLite
reference kernels on the rewritten flatbuffer (the convert tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np

from mcuasc.convert.memory_plan import METADATA_NAME, MemoryPlan, lifetimes, offline_plan_entry, plan_memory

BUFFER_DATA_ALIGNMENT = 16  # the schema's force_align for constant data, kept when the model is rewritten


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


class _AlignedBuffer:
    """Packs a schema BufferT with its data 16-byte aligned, as the TFLite converter writes it (the
    generated object API aligns bytes to 1, which would leave int32 biases and weights unaligned)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):
        schema = _schema()
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
    """Remove the quantization parameters of per-channel int32 bias tensors; returns how many."""
    schema = _schema()
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
        if tensor.type == schema.TensorType.INT32 and q is not None and q.scale is not None and len(q.scale) > 1:
            tensor.quantization = None
            dropped += 1
    return dropped


def _op_name(model, op) -> str:
    schema = _schema()
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
    schema = _schema()
    graph = model.subgraphs[0]
    buffers, tensors = model.buffers, graph.tensors
    consumers: dict[int, list[int]] = {}
    for k, op in enumerate(graph.operators):
        for i in op.inputs:
            consumers.setdefault(int(i), []).append(k)
    item = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}

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
            shape = list(tensors[activation].shape)
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
    reshape_code = next((i for i, c in enumerate(model.operatorCodes)
                         if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.RESHAPE), None)
    if reshape_code is None:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = schema.BuiltinOperator.RESHAPE, schema.BuiltinOperator.RESHAPE, 1
        model.operatorCodes.append(code)
        reshape_code = len(model.operatorCodes) - 1
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


def _pack(model, size_hint: int) -> bytes:
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
    """The deployed flatbuffer, checked to compute exactly what the converter's did."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    if len(model.subgraphs) != 1:
        raise ValueError("mcuasc finalizes single-subgraph models only")
    biases = drop_bias_quantization(model)
    bands = store_band_constants(model)
    plan = plan_memory(lifetimes(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(offline_plan_entry(model, plan).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = METADATA_NAME
    metadata.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [metadata]
    rewritten = _pack(model, len(flatbuffer))
    _check_same_outputs(flatbuffer, rewritten)
    return Finalized(rewritten, plan, biases, bands)


def without_memory_plan(flatbuffer: bytes) -> bytes:
    """The same model without its offline memory plan: for runs that keep every intermediate tensor (the plan lets
    in-place ops overwrite their inputs, and TFLM's preserve-all mode cannot honour it)."""
    model = _schema().ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = [m.name for m in (model.metadata or [])]
    if METADATA_NAME.encode() not in names and METADATA_NAME not in names:
        return flatbuffer
    model.metadata = [m for m in model.metadata if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    return _pack(model, len(flatbuffer))
