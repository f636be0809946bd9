"""The TensorFlow half of convert, run in its own process: ONNX → onnx2tf → SavedModel → TFLite.

TensorFlow and onnx2tf print hundreds of lines to stdout/stderr from C++ as well as Python; a child process
lets the parent send all of it to a log file (shown with --verbose) and keeps TensorFlow out of the
parent's memory. Invoked as

    python -m mcuasc.convert.tf_worker ONNX WORKDIR CALIBRATION.npy

CALIBRATION.npy holds float32 features, NHWC (clips, mels, frames, channels). Writes into WORKDIR:
saved_model/ (onnx2tf), model_float32.tflite and model_int8.tflite (both converted here from that SavedModel
with one converter, so their tensor names match for per-layer comparison), and stage.txt naming the stage
reached, for the parent's error message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _stage(workdir: Path, name: str) -> None:
    (workdir / "stage.txt").write_text(name)
    print(f"=== mcuasc stage: {name}", flush=True)


def _keep_broadcastable_constants(onnx2tf_module) -> None:
    """Work around onnx2tf 1.29 transposing a constant that already broadcasts against its NHWC partner.

    For x·c with x (1, C, F, T) and c (1, C, F, 1) in ONNX, onnx2tf first lays c out as (1, F, 1, C), which is
    right, then its shape_unmatched_special_avoidance_workaround permutes it again to (1, 1, C, F) and the
    conversion fails (SubSpectralNorm's per-band affine hits this). When one operand is a constant and the two
    already broadcast, there is nothing to avoid: return them unchanged. Anything this lets through wrongly is
    caught by the float check against torch that follows conversion.
    """
    import pkgutil
    import importlib

    import numpy as np

    from onnx2tf.utils import common_functions

    original = common_functions.shape_unmatched_special_avoidance_workaround

    def workaround(**kwargs):
        a, b = kwargs["input_tensor_1"], kwargs["input_tensor_2"]
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            sa, sb = list(a.shape), list(b.shape)
            if len(sa) == len(sb) and all(x is None or y is None or x == y or 1 in (x, y) for x, y in zip(sa, sb)):
                return a, b
        return original(**kwargs)

    for info in pkgutil.iter_modules(onnx2tf_module.ops.__path__):
        module = importlib.import_module(f"onnx2tf.ops.{info.name}")
        if getattr(module, "shape_unmatched_special_avoidance_workaround", None) is original:
            module.shape_unmatched_special_avoidance_workaround = workaround


def main(onnx_path: str, workdir: str, calibration_path: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    work = Path(workdir)
    import numpy as np

    _stage(work, "onnx2tf")
    import onnx2tf
    import onnx2tf.ops
    import tensorflow as tf

    _keep_broadcastable_constants(onnx2tf)

    tf.random.set_seed(0)
    # onnx2tf runs the `onnxsim` command by name: it lives beside this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    calibration = np.load(calibration_path).astype(np.float32)
    channels = calibration.shape[-1]
    # onnx2tf takes any 4-D input with 3 channels for an image and fetches sample images from GitHub for its
    # checks, unless a file of that name sits in the working directory: give it our own features instead.
    os.chdir(work)
    np.save(work / "calibration_image_sample_data_20x128x128x3_float32.npy",
            np.resize(calibration, (20, *calibration.shape[1:])))
    onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=str(work / "saved_model"),
                    output_signaturedefs=True, copy_onnx_input_output_names_to_tflite=True, verbosity="info",
                    custom_input_op_name_np_data_path=[["features", calibration_path, [0.0] * channels, [1.0] * channels]])

    _stage(work, "tflite-float32")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model"))
    (work / "model_float32.tflite").write_bytes(converter.convert())

    _stage(work, "tflite-int8")

    def representative_dataset():
        for clip in calibration:  # fixed order: the same data give the same flatbuffer
            yield [clip[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # int8 kernels or failure
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Per-channel weight quantization is the converter's default for conv and fully-connected weights.
    (work / "model_int8.tflite").write_bytes(converter.convert())
    _stage(work, "done")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m mcuasc.convert.tf_worker ONNX WORKDIR CALIBRATION.npy")
    main(*sys.argv[1:])
