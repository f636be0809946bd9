"""convert, stage 2 of the pipeline: checkpoint → ONNX → onnx2tf → int8 TFLite + manifest.

Every figure in the manifest is measured here, once: the int8 input quantization (which the front end then
uses), the TFLM arena, float-vs-int8 fidelity and per-layer SQNR.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from mcuasc import __version__
from mcuasc.checkpoint import load_checkpoint
from mcuasc.convert import analysis
from mcuasc.convert.manifest import Manifest, TensorQuantization, manifest_path
from mcuasc.convert.finalize import finalize, with_int8_io
from mcuasc.convert.onnx_export import OPSET, write_onnx
from mcuasc.data.cache import load_pcm
from mcuasc.data.tau import Clip, TauDataset
from mcuasc.errors import InputError, ToolError
from mcuasc.frontend import FloatFrontend, IntegerFrontend
from mcuasc.models import ARCHITECTURES
from mcuasc.models.export import correct_weight_rounding_bias, export_form, input_residual_norm
from mcuasc.models.zoo import MAX_MACS, MAX_PARAMS, zoo_report

Progress = Callable[[str], None]
LOG_HEADER = "# mcuasc convert log"


# What each choice of ConvertOptions.activations puts in the flatbuffer (the manifest's graph.activations).
ACTIVATIONS = {"int8": "int8 per-tensor",
               "int16": "int16 per-tensor (zero point 0; TFLite's 16x8 kernels), int8 input (CAST to int16) and "
                        "int8 output (QUANTIZE from int16)"}


# int8 activation ranges by default: each intermediate activation's 0.001th…99.999th percentile of the calibration
# values, not their min/max. On held-out clips it cut the seed student's flips against float by 25-40 % on both
# training seeds, losing at most 0.4 point of accuracy; the 99.99th clipped the large activations decisions rest on
# (README, Convert).
INT8_ACTIVATION_PERCENTILE = 99.999
INT16_PERCENTILE_REFUSED = "percentile activation ranges are for int8 activations; drop the percentile or use int8."


@dataclass(frozen=True)
class ConvertOptions:
    calibration_clips: int = 200  # at most; spread evenly over the calibration source
    validation_clips: int = 300  # at most, for the fidelity figures
    sqnr_clips: int = 4
    # Intermediate int8 activation ranges: narrowed to this percentile (and 100 minus it) of the calibration values
    # (mcuasc.convert.ranges), or the converter's min/max over the calibration set (None). int8 only: int16
    # activations take min/max (65,536 steps need no narrowing), and refuse any other percentile than this default.
    activation_percentile: float | None = INT8_ACTIVATION_PERCENTILE
    # "int8", or "int16": TFLite's 16x8 mode (int16 activations, per-channel int8 weights, int64 biases) inside
    # the same int8 input and output. BC-ResNet's int8 activations leave its decisions 1-1.5 % apart from float
    # (fidelity_budget.py); int16 takes them to ≥ 99 %, for 1.4–2× the arena (README, Convert).
    activations: str = "int8"
    # The float32 TFLite from onnx2tf must compute what torch computes before anything is quantized.
    float_tolerance: float = 1e-3  # max |Δ logit| relative to the largest |logit|
    # Correct each convolution's bias for the mean shift of int8 weight rounding on the calibration clips
    # (mcuasc.models.export.correct_weight_rounding_bias).
    weight_bias_correction: bool = True
    fallback_clips_per_class: int = 10
    fallback_seed: int = 2022


@dataclass(frozen=True)
class ConversionResult:
    manifest: Manifest
    manifest_path: Path
    out_dir: Path
    log_path: Path
    seconds: float
    notes: tuple[str, ...]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evenly(items: list, n: int) -> list:
    """At most n of items, spread evenly over them (calibration and validation clips)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def _wav_clips(folder: Path) -> list[Clip]:
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder} does not exist; pass a folder of WAV clips.")
    wavs = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not wavs:
        raise InputError(f"calibration folder {folder} holds no .wav files; pass a folder of WAV clips or --data DIR.")
    return [Clip(p, p.name, "", -1, "", "", "") for p in wavs]


def _tool_versions() -> dict[str, str]:
    versions = {"mcuasc": __version__, "python": sys.version.split()[0]}
    for package in ("torch", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert", "tflite-micro", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _claim_outputs(out_dir: Path, targets: dict[str, Path], force: bool) -> None:
    """Refuse to replace files this command did not write (a manifest naming them is the proof)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out_dir} ({exc.strerror}); pass a writable --out.") from None
    if not os.access(out_dir, os.W_OK):
        raise InputError(f"output folder {out_dir} is not writable; pass a writable --out.")
    def ours(role: str, path: Path) -> bool:
        if role == "log":  # a failed run leaves its log and nothing else
            with path.open("rb") as f:
                return f.read(len(LOG_HEADER)) == LOG_HEADER.encode()
        return targets["manifest"].exists()

    existing = [p for role, p in targets.items() if p.exists() and not ours(role, p)]
    if existing and not force:
        raise InputError(f"{existing[0]} exists and was not written by mcuasc convert; move it, pass another --out, or --force.")


def _run_tf_worker(onnx_path: Path, work: Path, calibration: np.ndarray, options: ConvertOptions, log_path: Path,
                   verbose: bool, shown_log: Path) -> None:
    calibration_path = work / "calibration.npy"
    np.save(calibration_path, calibration.astype(np.float32))
    percentile = options.activation_percentile if options.activations == "int8" else None
    command = [sys.executable, "-m", "mcuasc.convert.tf_worker", str(onnx_path), str(work), str(calibration_path),
               "minmax" if percentile is None else repr(float(percentile)), options.activations]
    env = dict(os.environ, PYTHONHASHSEED="0", TF_DETERMINISTIC_OPS="1")
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"{LOG_HEADER} {onnx_path.name}: onnx2tf and the TFLite converter\n")
        log.flush()
        process = subprocess.run(command, stdout=None if verbose else log, stderr=subprocess.STDOUT if not verbose else None,
                                 env=env, text=True)
    if process.returncode != 0:
        stage = (work / "stage.txt").read_text() if (work / "stage.txt").exists() else "start"
        raise ToolError(f"conversion failed in the {stage} stage (exit {process.returncode}); "
                        f"see {shown_log if not verbose else 'the output above'}.")


def convert(checkpoint_path: str | Path, out_dir: str | Path = ".", *, data: str | Path | None = None,
            calib: str | Path | None = None, force: bool = False, verbose: bool = False,
            options: ConvertOptions = ConvertOptions(), progress: Progress | None = None) -> ConversionResult:
    """Convert a checkpoint written by `mcuasc train` and write <name>.onnx, <name>_int8.tflite,
    <name>.manifest.json and <name>.convert.log (onnx2tf's and TensorFlow's output) into out_dir."""
    started = time.perf_counter()
    say = progress or (lambda message: None)
    if options.activations not in ACTIVATIONS:
        raise InputError(f"activations {options.activations!r} are not supported; choose {' or '.join(ACTIVATIONS)}.")
    if options.activations == "int16" and options.activation_percentile not in (None, INT8_ACTIVATION_PERCENTILE):
        raise InputError(INT16_PERCENTILE_REFUSED)
    if options.activation_percentile is not None and not 50.0 < options.activation_percentile <= 100.0:
        raise InputError(f"activation percentile {options.activation_percentile} is outside (50, 100]; give e.g. "
                         f"{INT8_ACTIVATION_PERCENTILE}, or none for the calibration set's min/max.")
    notes: list[str] = []
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.arch not in ARCHITECTURES:
        raise InputError(f"checkpoint architecture {checkpoint.arch!r} is unknown; it must be one of {', '.join(ARCHITECTURES)}.")
    if data is not None and calib is not None:
        raise InputError("pass either --data (a TAU-layout folder) or --calib (a folder of WAVs), not both.")
    calib_clips = _wav_clips(Path(calib)) if calib is not None else None
    dataset = TauDataset.open(data) if data is not None else None
    model = checkpoint.build_model()
    arch = ARCHITECTURES[checkpoint.arch]
    name = checkpoint_path.stem
    out_dir = Path(out_dir)
    targets = {"onnx": out_dir / f"{name}.onnx", "tflite": out_dir / f"{name}_int8.tflite",
               "manifest": manifest_path(out_dir, name), "log": out_dir / f"{name}.convert.log"}
    _claim_outputs(out_dir, targets, force)
    frontend_cfg = checkpoint.frontend
    # The input Residual Normalization moves into the integer front end: in the int8 graph its per-band
    # statistics lose most of their precision (RSQRT SQNR ≈ 5 dB measured), in the front end they are Q16/Q32.
    input_norm = input_residual_norm(model)
    model_input_cfg = frontend_cfg
    if input_norm is not None:
        model_input_cfg = dataclasses.replace(frontend_cfg, residual_norm=True, residual_norm_lambda=float(input_norm.lam),
                                              residual_norm_eps_db2=float(input_norm.eps))

    with tempfile.TemporaryDirectory(prefix="mcuasc-convert-") as tmp:
        work = Path(tmp)
        # Calibration and validation clips.
        if dataset is not None:
            calibration_clips, validation_clips = dataset.split("train"), dataset.split("evaluate")
            source = f"TAU-layout set {data}: train split for calibration, evaluate split for fidelity"
        else:
            from mcuasc.data.synth import synthesize_dataset

            say("synthesizing the fallback scene set")
            synthesize_dataset(work / "scenes", options.fallback_clips_per_class, seed=options.fallback_seed)
            synthetic = TauDataset.open(work / "scenes")
            validation_clips = synthetic.split("evaluate")
            if calib_clips is not None:
                calibration_clips = calib_clips
                source = f"WAVs in {calib} for calibration, the synthetic scene set for fidelity"
            else:
                calibration_clips = synthetic.split("train")
                source = "synthetic scene set (no --data or --calib given)"
                notes.append("no --data or --calib: calibrated and validated on mcuasc's synthetic scene set; "
                             "pass --data DIR (TAU layout) so the int8 ranges fit your recordings")
        calibration_clips = evenly(calibration_clips, options.calibration_clips)
        validation_clips = evenly(validation_clips, options.validation_clips)

        say(f"front end on {len(calibration_clips)} calibration and {len(validation_clips)} validation clips")
        calibration_pcm = load_pcm(calibration_clips, frontend_cfg)
        validation_pcm = load_pcm(validation_clips, frontend_cfg)
        float_frontend = FloatFrontend(frontend_cfg)
        validation_float = float_frontend(validation_pcm)  # NHWC float32 dB, what the torch model was trained on
        graph_frontend = FloatFrontend(model_input_cfg)  # what the exported graph takes
        calibration_features = graph_frontend(calibration_pcm)
        validation_graph_input = graph_frontend(validation_pcm)

        say("exporting ONNX")
        onnx_tmp = work / targets["onnx"].name
        calibration_nchw = torch.from_numpy(np.ascontiguousarray(calibration_features.transpose(0, 3, 1, 2)))
        # Every rewrite but the bias correction computes the checkpoint's function (checked below); the correction,
        # export_form's last step, is applied to a copy.
        exact = export_form(model, arch.input_shape, without_input_norm=input_norm is not None,
                            calibration=calibration_nchw, weight_bias_correction=False)
        exported = exact
        if options.weight_bias_correction:
            exported = copy.deepcopy(exact)
            correct_weight_rounding_bias(exported, calibration_nchw)
        write_onnx(exported, arch.input_shape, onnx_tmp)

        say("onnx2tf and the TFLite converter (log: " + str(targets["log"]) + ")")
        log_tmp = work / "convert.log"
        try:
            _run_tf_worker(onnx_tmp, work, calibration_features, options, log_tmp, verbose, targets["log"])
        except ToolError:
            if log_tmp.exists():
                shutil.copyfile(log_tmp, targets["log"])
            raise
        float_flatbuffer = (work / "model_float32.tflite").read_bytes()
        ranges_path = work / "activation_ranges.json"
        activation_ranges = ({"method": "percentile", **json.loads(ranges_path.read_text())} if ranges_path.exists()
                             else {"method": "minmax"})
        # Rewritten for deployment (mcuasc.convert.finalize): no redundant bias scales, SubSpectralNorm's
        # constants per band, an offline memory plan; the int8 arithmetic stays exactly the converter's.
        converted = (work / "model_int8.tflite").read_bytes()
        if options.activations == "int16":
            converted = with_int8_io((work / "model_int16.tflite").read_bytes(), converted)
        finalized = finalize(converted)
        deployed_flatbuffer, memory_plan = finalized.flatbuffer, finalized.memory_plan
        if finalized.ops_unaligned:
            notes.append(f"{len(finalized.ops_unaligned)} MUL, SUB or RSQRT operator(s) (#{', #'.join(map(str, finalized.ops_unaligned))} of the "
                         "converter's graph) keep scales on which TFLite's reference kernels and TFLM (its runtime, or the sources a "
                         "firmware is built from) can differ by one step; simulate names such an operator where "
                         "the runtime differs, the firmware's self-test shows where the device does")

        say("checking the converted graph")
        float_interpreter = analysis.reference_interpreter(float_flatbuffer)
        with torch.no_grad():  # also the float side of the fidelity figures below
            float_logits = model(torch.from_numpy(validation_float.transpose(0, 3, 1, 2).copy())).numpy()
        probe = slice(0, min(4, len(validation_pcm)))
        probe_input = torch.from_numpy(validation_graph_input[probe].transpose(0, 3, 1, 2).copy())
        with torch.no_grad():  # what the ONNX holds: onnx2tf must compute it
            torch_logits = exported(probe_input).numpy()
        tflite_logits = np.stack([analysis.invoke(float_interpreter, x) for x in validation_graph_input[probe]])
        scale = max(float(np.abs(float_logits[probe]).max()), 1e-6)
        error = float(np.abs(torch_logits - tflite_logits).max()) / scale
        if not error <= options.float_tolerance:
            raise ToolError(f"onnx2tf's float graph differs from the exported torch graph (relative error {error:.2e} > "
                            f"{options.float_tolerance:g}); the converter mis-translated an op, see {targets['log']}.")
        with torch.no_grad():
            export_error = float(np.abs(exact(probe_input).numpy() - float_logits[probe]).max()) / scale
        if not export_error <= options.float_tolerance:
            raise ToolError(f"mcuasc's export form of {name} differs from the checkpoint (relative error {export_error:.2e} > "
                            f"{options.float_tolerance:g}), a bug in mcuasc.models.export; please report it with the checkpoint.")
        # What the bias correction moved (by as much as the weights' rounding moves the logits the other way).
        export_shift = float(np.abs(torch_logits - float_logits[probe]).max()) / scale

        interpreter = analysis.reference_interpreter(deployed_flatbuffer)
        input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        if input_detail["dtype"] != np.int8 or output_detail["dtype"] != np.int8:
            raise ToolError("the converter did not produce int8 input and output tensors; see " + str(targets["log"]))
        in_scale, in_zero = analysis.tensor_quantization(input_detail)
        out_scale, out_zero = analysis.tensor_quantization(output_detail)
        ops = analysis.op_names(interpreter)

        say("measuring the TFLM arena")
        try:
            arena = analysis.measure_tflm_arena(deployed_flatbuffer)
        except analysis.TflmError as exc:
            missing = analysis.unsupported_ops(str(exc))
            what = f"ops TFLM lacks: {', '.join(missing)}" if missing else str(exc)
            raise ToolError(f"the TFLM runtime cannot run {name}_int8.tflite ({what}); change the model's layers.") from None

        # The front end's int8 output is the model's input tensor: decided here, once.
        deployed_cfg = dataclasses.replace(model_input_cfg, output_scale=in_scale, output_zero_point=in_zero,
                                           quantization_source="model")
        say("fidelity: float torch vs int8 (reference kernels) on the integer front end")
        integer_frontend = IntegerFrontend(deployed_cfg)
        validation_int8 = integer_frontend(validation_pcm)
        calibration_int8 = integer_frontend(calibration_pcm)
        int8_logits = np.stack([analysis.invoke(interpreter, x) for x in validation_int8])
        labels = np.array([c.label_index for c in validation_clips])
        fid = analysis.fidelity(float_logits, int8_logits, out_scale, out_zero, labels)
        quantized = "int8" if options.activations == "int8" else "the int16-activation model"
        if fid.agreement < 0.99 and options.activations == "int8":
            notes.append(f"int8 decides as float on {100 * fid.agreement:.1f} % of the validation clips; int16 activations "
                         "(--activations int16: same int8 input, output and weights, a larger arena) bring it closer")
        elif fid.agreement < 0.99 and not checkpoint.train_config.get("quantization_aware"):
            notes.append(f"{quantized} decides as float on {100 * fid.agreement:.1f} % of the validation clips; fine-tuning with int8 "
                         f"simulated may help: mcuasc finetune-int8 {checkpoint_path} --data DIR, then convert the result")
        elif fid.agreement_ci95[0] < 0.99:
            notes.append(f"{quantized} decides as float on {100 * fid.agreement:.1f} % of {fid.clips} validation clips, but so few clips "
                         f"leave that between {100 * fid.agreement_ci95[0]:.1f} and {100 * fid.agreement_ci95[1]:.1f} % (95 %); "
                         "validate on more (--validation-clips N, with an evaluate split in --data that large) to show ≥ 99 %")
        # What the device runs (TFLM) against the reference, on the same clips; simulate localises any difference.
        tflm_agrees = analysis.tflm_matches(deployed_flatbuffer, arena, validation_int8, int8_logits)
        if not all(tflm_agrees):
            notes.append(f"the TFLM runtime's logits differ from TFLite's reference kernels on {tflm_agrees.count(False)} of "
                         f"{len(tflm_agrees)} validation clips; mcuasc simulate on those clips names the first divergent operator")
        say("per-layer SQNR")
        sqnr = analysis.layer_sqnr(float_flatbuffer, deployed_flatbuffer, validation_graph_input[: options.sqnr_clips])

        def saturated(x: np.ndarray) -> float:
            return float(np.mean((x == -128) | (x == 127)))

        # Write: everything under temporary names beside the targets first, then rename, so a failure
        # leaves no half-written set.
        staged = {role: out_dir / f".{path.name}.partial" for role, path in targets.items()}
        shutil.copyfile(onnx_tmp, staged["onnx"])
        staged["tflite"].write_bytes(deployed_flatbuffer)
        report = zoo_report([checkpoint.arch])[0]
        macs = int(report["macs"])
        parameters = int(sum(p.numel() for p in model.parameters()))
        manifest = Manifest(
            name=name, arch=checkpoint.arch, labels=tuple(checkpoint.labels), frontend=deployed_cfg,
            input=TensorQuantization(in_scale, in_zero, tuple(int(v) for v in input_detail["shape"])),
            output=TensorQuantization(out_scale, out_zero, tuple(int(v) for v in output_detail["shape"])),
            files={role: targets[role].name for role in ("onnx", "tflite", "log")},
            ops=tuple(ops), parameters=parameters, macs=macs, flatbuffer_bytes=len(deployed_flatbuffer),
            tflm_arena_bytes=arena,
            dcase_limits={"params_counted": report["dcase_limits"]["params_counted"], "max_params": MAX_PARAMS,
                          "macs": macs, "max_macs": MAX_MACS, "within": bool(report["dcase_limits"]["within"])},
            calibration={"source": source, "clips": len(calibration_clips), "input_range_db":
                         [float(calibration_features.min()), float(calibration_features.max())],
                         "saturated_fraction_calibration": saturated(calibration_int8),
                         "saturated_fraction_validation": saturated(validation_int8)},
            # A list, as the manifest's JSON reads back.
            fidelity={**dataclasses.asdict(fid), "agreement_ci95": list(fid.agreement_ci95),
                      "accuracy_drop_points": fid.accuracy_drop_points,
                      "validation": "evaluate split" if data is not None else "synthetic scene set, evaluate split",
                      "float_features": "float64 reference front end", "int8_features": "integer front end (numpy)",
                      "int8_engine": "TFLite reference kernels (BUILTIN_REF)",
                      "tflm_bit_exact_clips": sum(tflm_agrees)},
            layer_sqnr=tuple(sqnr),
            graph={"onnx_opset": OPSET, "op_count": len(ops), "float_check_relative_error": error,
                   "bias_correction": ("each convolution's bias less the mean shift int8 weight rounding causes on the calibration clips"
                                       if options.weight_bias_correction else "none"),
                   "export_logit_shift_relative": export_shift,
                   "export_check_relative_error": export_error,
                   "input_norm": "in the integer front end (residual_norm)" if input_norm is not None else "none",
                   "weights": "int8 per-channel (conv, depthwise conv, fully connected), "
                              + ("int32 biases" if options.activations == "int8" else "int64 biases"),
                   "activations": ACTIVATIONS[options.activations],
                   "activation_ranges": activation_ranges,
                   "rewrites": {"bias_tensors_without_quantization": finalized.bias_tensors_without_quantization,
                                "band_constants": finalized.band_constants,
                                "grouped_convs_as_depthwise": finalized.depthwise_convs,
                                "mul_scales_aligned": finalized.mul_scales_aligned,
                                "rsqrt_scales_aligned": finalized.rsqrt_scales_aligned,
                                "sub_scales_aligned": finalized.sub_scales_aligned,
                                "ops_unaligned": list(finalized.ops_unaligned)},
                   "memory_plan": {"kind": "offline (flatbuffer metadata OfflineMemoryAllocation), element-wise ops in place",
                                   "activation_bytes": memory_plan.head_bytes,
                                   "lower_bound_bytes": memory_plan.lower_bound_bytes}},
            tools=_tool_versions(),
            hashes={"checkpoint": _sha256(checkpoint_path), "onnx": _sha256(onnx_tmp),
                    "tflite": hashlib.sha256(deployed_flatbuffer).hexdigest()},
        )
        staged["manifest"].write_text(manifest.to_json(), encoding="utf-8")
        shutil.copyfile(log_tmp, staged["log"])
        for role in ("log", "onnx", "tflite", "manifest"):  # the manifest last: it vouches for the others
            os.replace(staged[role], targets[role])
    return ConversionResult(manifest, targets["manifest"], out_dir, targets["log"], time.perf_counter() - started, tuple(notes))
