"""An offline memory plan for TFLM, written into the flatbuffer's metadata.

TFLM's online planner (GreedyMemoryPlanner) places activation buffers largest first; on BC-ResNet's chain of
same-sized tensors that leaves the arena's head ≈ 1.5× the largest sum of buffers alive at one time. TFLM
honours an "OfflineMemoryAllocation" metadata entry instead (tflite-micro docs/memory_management.md): a buffer
of int32 [version 0, subgraph 0, n tensors, offset of tensor 0 … n−1 in bytes from the start of the arena's
head, −1 for tensors left to the runtime]. Here the offsets come from first-fit placements in several orders,
the smallest kept; two buffers may share bytes only when no operator has both alive (an operator's inputs and
outputs are alive together), except that an element-wise operator writes its output over an input of the same
shape that it is the last reader of (IN_PLACE_OPS): on BC-ResNet that halves the activation memory, since
every block is a chain of same-sized element-wise steps (SubSpectralNorm's MUL and ADD, the residual ADDs). TFLite ignores the entry, so the reference interpreter runs the same flatbuffer.
mcuasc.convert.finalize writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METADATA_NAME = "OfflineMemoryAllocation"
ALIGNMENT = 16  # TFLM aligns every arena buffer to 16 bytes (kBufferAlignment)
# Operators whose kernels (TFLM reference and CMSIS-NN) compute output element i from input element i and
# nothing after it: the output may overwrite an input of its shape that dies there (RESHAPE then copies nothing).
IN_PLACE_OPS = ("ADD", "SUB", "MUL", "LOGISTIC", "RESHAPE")
_ITEM_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
               "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT16": 2}


@dataclass(frozen=True)
class Lifetime:
    """A buffer in the arena: bytes (aligned) and the operators between which it is alive. `tensor` names it;
    `aliases` are tensors written in place over it (see IN_PLACE_OPS), sharing its bytes."""

    tensor: int
    size: int
    first_op: int
    last_op: int
    aliases: tuple[int, ...] = ()

    def overlaps(self, other: Lifetime) -> bool:
        return self.first_op <= other.last_op and other.first_op <= self.last_op


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[int, int]  # tensor index → byte offset in the arena's head
    head_bytes: int  # the plan's extent
    lower_bound_bytes: int  # largest sum of buffers alive at one operator: no plan can be smaller


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def lifetimes(model, in_place: bool = True) -> list[Lifetime]:
    """Buffers the arena holds for subgraph 0 of an unpacked model (schema ModelT), as TFLM counts them:
    graph inputs alive from operator 0, graph outputs to the last operator. With `in_place`, the output of an
    IN_PLACE_OPS operator shares the buffer of a same-shaped input whose last use it is (not a graph input)."""
    schema = _schema()
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    last_op = len(graph.operators) - 1

    def constant(i: int) -> bool:
        data = model.buffers[graph.tensors[i].buffer].data
        return data is not None and len(data) > 0

    def size(i: int) -> int:
        tensor = graph.tensors[i]
        return int(np.prod(tensor.shape)) * _ITEM_BYTES[type_names[tensor.type]] if tensor.shape is not None else 0

    first: dict[int, int] = {i: 0 for i in graph.inputs}
    last: dict[int, int] = {}
    for k, op in enumerate(graph.operators):
        for i in op.inputs:
            if i >= 0 and not constant(i):
                first.setdefault(i, k)
                last[i] = k
        for i in op.outputs:
            first.setdefault(i, k)
            last.setdefault(i, k)
    for i in graph.outputs:
        last[i] = last_op
    owner = {i: i for i in first}  # tensor → the tensor whose buffer it uses
    if in_place:
        for k, op in enumerate(graph.operators):
            code = model.operatorCodes[op.opcodeIndex]
            if op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) not in IN_PLACE_OPS or len(op.outputs) != 1:
                continue
            out = op.outputs[0]
            reshape = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) == "RESHAPE"
            for i in op.inputs:
                if i < 0 or constant(i) or i in graph.inputs or last[i] != k:
                    continue
                same_bytes = graph.tensors[i].type == graph.tensors[out].type and size(i) == size(out)
                if same_bytes and (reshape or list(graph.tensors[i].shape) == list(graph.tensors[out].shape)):
                    owner[out] = owner[i]
                    break
    spans = []
    for root in sorted(i for i in first if owner[i] == i):
        members = [i for i in first if owner[i] == root]
        if size(root) > 0:
            spans.append(Lifetime(root, _align(size(root)), min(first[i] for i in members),
                                  max(last.get(i, first[i]) for i in members), tuple(sorted(set(members) - {root}))))
    return spans


def _first_fit(order: list[Lifetime]) -> dict[int, int]:
    placed: list[tuple[Lifetime, int]] = []
    offsets: dict[int, int] = {}
    for span in order:
        taken = sorted((offset, offset + other.size) for other, offset in placed if other.overlaps(span))
        offset = 0
        for start, end in taken:
            if offset + span.size <= start:
                break
            offset = max(offset, end)
        offsets[span.tensor] = offset
        placed.append((span, offset))
    return offsets


def plan_memory(spans: list[Lifetime]) -> MemoryPlan:
    """First fit in a few orders (largest first, earliest first, longest-lived first); the smallest head wins."""
    ops = range(max((s.last_op for s in spans), default=-1) + 1)
    lower = max((sum(s.size for s in spans if s.first_op <= k <= s.last_op) for k in ops), default=0)
    orders = [
        sorted(spans, key=lambda s: (-s.size, s.first_op, s.tensor)),
        sorted(spans, key=lambda s: (s.first_op, -s.size, s.tensor)),
        sorted(spans, key=lambda s: (-(s.last_op - s.first_op), -s.size, s.tensor)),
        sorted(spans, key=lambda s: (-s.size * (s.last_op - s.first_op + 1), s.tensor)),
    ]
    best: dict[int, int] | None = None
    best_head = 0
    sizes = {s.tensor: s.size for s in spans}
    for order in orders:
        offsets = _first_fit(order)
        head = max((offsets[t] + sizes[t] for t in offsets), default=0)
        if best is None or head < best_head:
            best, best_head = offsets, head
    offsets = dict(best or {})
    for span in spans:
        for alias in span.aliases:
            offsets[alias] = offsets[span.tensor]
    return MemoryPlan(offsets, best_head, lower)


def offline_plan_entry(model, plan: MemoryPlan) -> np.ndarray:
    """The OfflineMemoryAllocation buffer's int32 values for subgraph 0 of `model`."""
    tensors = len(model.subgraphs[0].tensors)
    entry = np.full(3 + tensors, -1, dtype="<i4")
    entry[:3] = (0, 0, tensors)  # format version, subgraph, number of offsets
    for tensor, offset in plan.offsets.items():
        entry[3 + tensor] = offset
    return entry
