"""The int8 flatbuffer as deployed: what the TFLite converter wrote, rewritten where it wastes flash or RAM.

- Per-channel int32 biases lose their quantization parameters: TFLite defines a bias's scale as input scale ×
  weight scale (zero point 0) and both runtimes compute it from those, never read it; the converter stores a
  float32 scale and an int64 zero point per channel (12 B a channel, ≈ 29 KB on the BC-ResNet student).
- An offline memory plan (mcuasc.convert.memory_plan) in the metadata, which TFLM uses instead of its online
  planner.
Every rewrite keeps the int8 arithmetic as it is: the TFLM runtime must stay bit-identical to the TFLite
reference kernels on the rewritten flatbuffer (the convert tests check it).
"""

from __future__ import annotations

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


def _pack(model, size_hint: int) -> bytes:
    model.buffers = [_AlignedBuffer(b) for b in model.buffers]
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def finalize(flatbuffer: bytes) -> tuple[bytes, MemoryPlan]:
    """The deployed flatbuffer and the memory plan written into it."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    if len(model.subgraphs) != 1:
        raise ValueError("mcuasc finalizes single-subgraph models only")
    drop_bias_quantization(model)
    plan = plan_memory(lifetimes(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(offline_plan_entry(model, plan).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = METADATA_NAME
    metadata.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [metadata]
    return _pack(model, len(flatbuffer)), plan
