"""torch → ONNX: the inference-time form of a model (mcuasc.models.export), as a clean static graph."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from mcuasc.models.export import export_form

OPSET = 17
INPUT_NAME = "features"
OUTPUT_NAME = "logits"


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes become initializers. onnx2tf reads an initializer as a NumPy value; a Constant node's
    output reaches it as a tensor, and then e.g. Split's sizes become a dynamic SPLIT_V that TFLite cannot
    lower to a builtin op."""
    graph = model.graph
    keep = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None:
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value.t), node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path, *,
                without_input_norm: bool = False, calibration: torch.Tensor | None = None) -> onnx.ModelProto:
    """Export `model` (eval mode, any zoo architecture) for a batch of one, NCHW input named "features"."""
    exported = export_form(model, input_shape, without_input_norm=without_input_norm, calibration=calibration)
    return write_onnx(exported, input_shape, path)


def write_onnx(exported: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path) -> onnx.ModelProto:
    """Write a model already in its inference-time form (export_form) as ONNX."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy TorchScript exporter's deprecation notice
        torch.onnx.export(exported, torch.zeros(1, *input_shape), buffer, opset_version=OPSET, dynamo=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    graph = onnx.load_from_string(buffer.getvalue())
    _constants_to_initializers(graph)
    graph.producer_name = "mcuasc"
    onnx.checker.check_model(graph)
    Path(path).write_bytes(graph.SerializeToString())
    return graph
