"""Stage 2, convert: a trained checkpoint → ONNX → onnx2tf → int8 TFLite flatbuffer + manifest."""

from mcuasc.convert.manifest import Manifest, TensorQuantization, find_manifest, load_manifest
from mcuasc.convert.pipeline import ConversionResult, ConvertOptions, convert

__all__ = ["ConversionResult", "ConvertOptions", "Manifest", "TensorQuantization", "convert", "find_manifest", "load_manifest"]
