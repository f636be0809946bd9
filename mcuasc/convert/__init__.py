"""Stage 2, convert: a trained checkpoint → ONNX → onnx2tf → int8 TFLite flatbuffer + manifest.

`convert` (which needs torch) is imported on first use, so later stages that only read the manifest or run
the int8 model (simulate, gen-firmware) stay light.
"""

from mcuasc.convert.manifest import Manifest, TensorQuantization, find_manifest, load_manifest

__all__ = ["ConversionResult", "ConvertOptions", "Manifest", "TensorQuantization", "convert", "find_manifest", "load_manifest"]


def __getattr__(name: str):
    if name in ("ConversionResult", "ConvertOptions", "convert"):
        from mcuasc.convert import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mcuasc.convert' has no attribute {name!r}")
