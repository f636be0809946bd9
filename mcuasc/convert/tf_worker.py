"""The TensorFlow half of convert, run in its own process: ONNX → onnx2tf → SavedModel → TFLite.

TensorFlow and onnx2tf print hundreds of lines to stdout/stderr from C++ as well as Python; a child process
lets the parent send all of it to a log file (shown with --verbose) and keeps TensorFlow out of the
parent's memory. Invoked as

    python -m mcuasc.convert.tf_worker ONNX WORKDIR CALIBRATION.npy PERCENTILE [int8|int16]

CALIBRATION.npy holds float32 features, NHWC (clips, mels, frames, channels); PERCENTILE narrows the int8
activation ranges (mcuasc.convert.ranges), or is "minmax" for the converter's own min/max. Writes into WORKDIR:
saved_model/ (onnx2tf), model_float32.tflite and model_int8.tflite (both converted here from that SavedModel
with one converter, so their tensor names match for per-layer comparison), with int16 also model_int16.tflite
(TFLite's 16x8 mode: int16 activations, int8 weights, int64 biases, int16 input and output), activation_ranges.json
(what the narrowing did), and stage.txt naming the stage reached, for the parent's error message.
"""

from __future__ import annotations

import dataclasses
import json
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


def _keep_add_outputs_nhwc() -> None:
    """Work around onnx2tf 1.29 laying out every 4-D Add's output as NCHW.

    After converting an Add, onnx2tf compares the TF output's shape with the ONNX (NCHW) one and, when they
    differ, "rescues" the op by transposing both inputs until the output has the ONNX shape. An NHWC output
    always differs, so each Add is computed in NCHW between transposes, and its consumers transpose back. The
    TFLite converter cancels those pairs when the Add's consumers are convolutions or pools (the BC-ResNet
    student, whose norms follow a max-pool), but not when one NCHW tensor feeds both element-wise ops and pools:
    the teacher's block Residual Normalizations, Mul(x, x) beside average pools of x, kept 22 TRANSPOSEs.
    A depthwise conv reading an Add's output also became a grouped CONV_2D in every BC-ResNet (onnx2tf picks
    depthwise when the group count equals the input's last axis, T rather than C in NCHW). Decline the rescue
    when the Add's output is already the NHWC arrangement of the ONNX shape; any other rescue goes ahead as
    before. Anything this lets through wrongly is caught by the float check against torch after conversion.
    """
    from onnx2tf.ops import Add

    make_node, transpose = Add.make_node, Add.transpose_with_flexing_deterrence  # only the rescue transposes
    converting: list[tuple] = []  # (ONNX Add node, onnx2tf's tensor table) while one is converted

    def nhwc_output(node, tf_layers) -> bool:
        onnx_shape = list(node.outputs[0].shape or [])
        tf_shape = getattr(tf_layers.get(node.outputs[0].name, {}).get("tf_node"), "shape", None)
        if len(onnx_shape) < 3 or tf_shape is None or len(tf_shape) != len(onnx_shape):
            return False
        expected = [onnx_shape[0], *onnx_shape[2:], onnx_shape[1]]
        return all(not isinstance(e, int) or not isinstance(a, int) or a == e for e, a in zip(expected, list(tf_shape)))

    def add_make_node(*args, **kwargs):
        converting.append((kwargs["graph_node"], kwargs["tf_layers_dict"]))
        try:
            return make_node(*args, **kwargs)
        finally:
            converting.pop()

    def rescue_transpose(**kwargs):
        if converting and nhwc_output(*converting[-1]):
            return kwargs["input_tensor"]  # every permutation declined: the rescue finds none and keeps NHWC
        return transpose(**kwargs)

    Add.make_node, Add.transpose_with_flexing_deterrence = add_make_node, rescue_transpose


def main(onnx_path: str, workdir: str, calibration_path: str, percentile: str, activations: str = "int8") -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    work = Path(workdir)
    import numpy as np

    _stage(work, "onnx2tf")
    import onnx2tf
    import onnx2tf.ops
    import tensorflow as tf

    _keep_broadcastable_constants(onnx2tf)
    _keep_add_outputs_nhwc()

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
    if percentile == "minmax":
        (work / "model_int8.tflite").write_bytes(converter.convert())
    else:
        # Calibrate, narrow the ranges, then quantize as convert() would (TFLiteConverterBase._quantize with
        # the new quantizer, tensorflow 2.19): the same quantizer, given other ranges.
        from tensorflow.lite.python.convert import mlir_quantize

        from mcuasc.convert.ranges import narrow_activation_ranges

        converter._experimental_calibrate_only = True
        calibrated, report = narrow_activation_ranges(converter.convert(), calibration, float(percentile))
        (work / "activation_ranges.json").write_text(json.dumps(dataclasses.asdict(report)))
        (work / "model_int8.tflite").write_bytes(mlir_quantize(calibrated, input_data_type=tf.int8, output_data_type=tf.int8))
    if activations == "int16":
        _stage(work, "tflite-int16-activations")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # int16 kernels or failure; the converter allows only int16 (or float) input and output here: the parent
        # gives the model int8 ones (mcuasc.convert.finalize.int8_io).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
        (work / "model_int16.tflite").write_bytes(converter.convert())
    _stage(work, "done")


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: python -m mcuasc.convert.tf_worker ONNX WORKDIR CALIBRATION.npy PERCENTILE|minmax [int8|int16]")
    main(*sys.argv[1:])
