"""convert: the real chain (torch → ONNX → onnx2tf → TFLite converter), loaded in the real TFLM runtime."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess

import numpy as np
import onnx
import pytest
import torch

from conftest import mcuasc_command
from mcuasc.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mcuasc.convert import analysis, convert, find_manifest, load_manifest
from mcuasc.convert.fixed_point import mul_engines_agree
from mcuasc.convert.onnx_export import export_onnx
from mcuasc.cli import _percentile_option
from mcuasc.convert.pipeline import ACTIVATIONS, INT8_ACTIVATION_PERCENTILE, ConvertOptions, _run_tf_worker
from mcuasc.convert.ranges import _Tails
from mcuasc.data.cache import load_pcm
from mcuasc.data.tau import TauDataset
from mcuasc.frontend import IntegerFrontend, preset
from mcuasc.models import ARCHITECTURES, build_model
from mcuasc.models.bcresnet import BCResNet
from mcuasc.train import recipe_for, train

LAYOUT_OPS = {"TRANSPOSE", "GATHER", "GATHER_ND"}


def _trained(scenes, arch: str, out, epochs: int = 2):
    config = dataclasses.replace(recipe_for(arch), epochs=epochs)
    train(scenes, config, out)
    return out


@pytest.fixture(scope="module")
def scenes(student_scenes):
    return student_scenes


@pytest.fixture(scope="module")
def student(trained_student):
    return trained_student


@pytest.fixture(scope="module")
def converted(converted_student):
    return converted_student


def _untrained_checkpoint(path, arch="bcresnet-student"):
    model = build_model(arch)
    cfg = preset(ARCHITECTURES[arch].frontend_preset)
    save_checkpoint(Checkpoint(arch, model.state_dict(), cfg, [f"c{i}" for i in range(10)]), path)
    return path


@pytest.mark.slow
def test_student_files_and_manifest_describe_the_model(converted, student, scenes):
    m, out = converted.manifest, converted.out_dir
    for role in ("onnx", "tflite", "log"):
        assert (out / m.files[role]).stat().st_size > 0
    assert load_manifest(converted.manifest_path) == m
    assert find_manifest(out) == converted.manifest_path
    checkpoint = load_checkpoint(student)
    flatbuffer = (out / m.files["tflite"]).read_bytes()
    interpreter = analysis.reference_interpreter(flatbuffer)
    input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    assert tuple(input_detail["shape"]) == m.input.shape == (1, 256, 44, 1)
    assert tuple(output_detail["shape"]) == m.output.shape == (1, 10)
    # The front end's output quantization is the model's input quantization, taken from the flatbuffer.
    assert (m.frontend.output_scale, m.frontend.output_zero_point) == analysis.tensor_quantization(input_detail)
    assert m.frontend.quantization_source == "model"
    # ... and the model's input Residual Normalization moved into the front end; nothing else changed.
    assert m.frontend.residual_norm and m.graph["input_norm"].startswith("in the integer front end")
    assert dataclasses.replace(m.frontend, output_scale=checkpoint.frontend.output_scale,
                               output_zero_point=checkpoint.frontend.output_zero_point,
                               quantization_source=checkpoint.frontend.quantization_source, residual_norm=False,
                               residual_norm_eps_db2=checkpoint.frontend.residual_norm_eps_db2) == checkpoint.frontend
    assert list(m.labels) == checkpoint.labels
    assert list(m.ops) == analysis.op_names(interpreter)
    assert m.flatbuffer_bytes == len(flatbuffer)
    assert m.parameters == sum(p.numel() for p in checkpoint.build_model().parameters())
    assert m.hashes["tflite"] == hashlib.sha256(flatbuffer).hexdigest()
    assert m.hashes["checkpoint"] == hashlib.sha256(student.read_bytes()).hexdigest()
    assert m.hashes["onnx"] == hashlib.sha256((out / m.files["onnx"]).read_bytes()).hexdigest()
    assert m.dcase_limits["within"] and m.macs == pytest.approx(19.2e6, rel=0.02)
    for key in ("agreement", "float_accuracy", "int8_accuracy"):
        assert 0.0 <= m.fidelity[key] <= 1.0
    assert m.fidelity["clips"] == len(TauDataset.open(scenes).split("evaluate"))
    assert 0 <= m.fidelity["tflm_bit_exact_clips"] <= m.fidelity["clips"]
    low, high = m.fidelity["agreement_ci95"]
    assert m.fidelity["flips"] == round((1 - m.fidelity["agreement"]) * m.fidelity["clips"])
    assert 0.0 <= low <= m.fidelity["agreement"] <= high <= 1.0
    # Below the agreement goal, convert points at the remedy: int16 activations.
    assert (m.fidelity["agreement"] < 0.99) == any("--activations int16" in n for n in converted.notes)
    # At or above it, convert says when the validation set is too small to show it.
    if m.fidelity["agreement"] >= 0.99:
        assert (low < 0.99) == any("--validation-clips" in n for n in converted.notes)
    assert m.calibration["clips"] == len(TauDataset.open(scenes).split("train"))
    assert len(m.layer_sqnr) > len(m.ops) // 2 and all(isinstance(r["sqnr_db"], float) for r in m.layer_sqnr)
    assert 0.0 <= m.calibration["saturated_fraction_validation"] < 0.01
    # By default the intermediate ranges are narrowed to a percentile of the calibration values.
    ranges = m.graph["activation_ranges"]
    assert ranges["method"] == "percentile" and ranges["percentile"] == INT8_ACTIVATION_PERCENTILE
    assert 0 < ranges["narrowed"] <= ranges["tensors"]


def _flatbuffer_convs(flatbuffer: bytes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(filter as OIHW floats, bias as floats, bias step) of each CONV_2D and DEPTHWISE_CONV_2D of a flatbuffer."""
    from mcuasc.convert.finalize import _op_name, tflite_schema

    model = tflite_schema().ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]

    def values(tensor, dtype):
        raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
        return np.frombuffer(raw, dtype=dtype).reshape(tensor.shape).astype(np.float64)

    convs = []
    for op in graph.operators:
        kind = _op_name(model, op)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w, b = (graph.tensors[int(i)] for i in op.inputs[:3])
            scales = w.quantization.scale.astype(np.float64)
            q = values(w, np.int8)  # CONV_2D (O, kh, kw, I); DEPTHWISE_CONV_2D (1, kh, kw, C)
            oihw = (q.transpose(0, 3, 1, 2) if kind == "CONV_2D" else q.transpose(3, 0, 1, 2)) * scales.reshape(-1, 1, 1, 1)
            step = float(x.quantization.scale[0]) * scales
            convs.append((oihw, values(b, "<i4") * step, step))
    return convs


@pytest.mark.slow
def test_flatbuffer_holds_the_onnx_weights_on_the_predicted_int8_grid_and_the_corrected_biases(converted):
    """The bias correction (mcuasc.models.export) predicts how the converter rounds each weight: every conv of the
    flatbuffer must be an ONNX conv's weights on int8_weight_grid (but for a few float32 ties), with the ONNX bias
    (corrected for that rounding) to within half a bias step."""
    from onnx import numpy_helper

    from mcuasc.models.export import int8_weight_grid

    m, out = converted.manifest, converted.out_dir
    graph = onnx.load(out / m.files["onnx"]).graph
    initializers = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in graph.initializer}
    onnx_convs = [(initializers[n.input[1]], initializers[n.input[2]] if len(n.input) > 2 else None)
                  for n in graph.node if n.op_type == "Conv"]
    flatbuffer_convs = _flatbuffer_convs((out / m.files["tflite"]).read_bytes())
    assert len(flatbuffer_convs) == len(onnx_convs) > 40
    unmatched, mismatched = list(range(len(onnx_convs))), 0
    for weights, bias, step in flatbuffer_convs:
        steps = np.abs(weights).reshape(len(weights), -1).max(axis=1).reshape(-1, 1, 1, 1) / 127

        def off_grid(i: int) -> int:
            """How many of the flatbuffer's weights lie off ONNX conv i's weights on the predicted grid (None: some
            by more than a step). float32 rounding may send a weight within ~10⁻⁷ of a half step the other way."""
            if onnx_convs[i][0].shape != weights.shape:
                return None
            predicted = int8_weight_grid(torch.from_numpy(onnx_convs[i][0].astype(np.float32))).double().numpy()
            distance = np.abs(predicted - weights) / steps
            return int((distance > 1e-3).sum()) if distance.max() < 1.001 else None

        candidates = [(off_grid(i), i) for i in unmatched if off_grid(i) is not None]
        assert candidates, f"no ONNX conv has the flatbuffer's {weights.shape} weights on the int8 grid"
        off, match = min(candidates)
        mismatched += off
        unmatched.remove(match)
        expected_bias = onnx_convs[match][1] if onnx_convs[match][1] is not None else np.zeros_like(bias)
        # Half a step, plus what the converter's float32 arithmetic leaves (steps reach 10⁻⁸ here).
        assert np.all(np.abs(expected_bias - bias) <= 0.5 * step + 1e-6 * np.abs(expected_bias))
    assert mismatched <= 1e-4 * sum(w.size for w, _, _ in flatbuffer_convs)
    assert m.graph["bias_correction"].startswith("each convolution's bias")
    assert m.graph["export_logit_shift_relative"] > 0  # the correction moved the float function ...
    assert m.graph["export_check_relative_error"] <= 1e-3  # ... and nothing else did


def test_fidelity_counts_flips_and_bounds_the_agreement():
    """3 flips in 100 clips: agreement 97 %, and the Wilson 95 % interval worked out by hand, 91.55–98.97 %."""
    float_logits = np.tile([2.0, 1.0, 0.0], (100, 1))
    int8_logits = np.tile(np.array([20, 10, 0], dtype=np.int8), (100, 1))
    int8_logits[:3] = [10, 20, 0]
    fid = analysis.fidelity(float_logits, int8_logits, 0.1, 0, np.zeros(100, dtype=int))
    assert (fid.flips, fid.agreement) == (3, 0.97)
    assert fid.agreement_ci95 == pytest.approx((0.9155, 0.9897), abs=2e-4)
    assert fid.int8_accuracy == 0.97 and fid.float_accuracy == 1.0


@pytest.mark.slow
def test_student_graph_has_no_layout_ops(converted):
    m, out = converted.manifest, converted.out_dir
    assert not LAYOUT_OPS & set(m.ops), m.op_counts
    assert m.ops[-1] == "RESHAPE"  # (1,1,1,10) → (1,10)
    # Every other RESHAPE is a SubSpectralNorm band view, (1, F, T, C) ↔ (1, S, F/S·T, C): the same NHWC bytes.
    interpreter = analysis.reference_interpreter((out / m.files["tflite"]).read_bytes())
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    band_views = [op for op in interpreter._get_ops_details()[:-1] if op["op_name"] == "RESHAPE"]
    # One view in and one back per SubSpectralNorm, whose MUL and ADD constants both shrank.
    assert len(band_views) == m.graph["rewrites"]["band_constants"] == 18
    for op in band_views:
        source, target = (list(details[op[k][0]]["shape"]) for k in ("inputs", "outputs"))
        assert source[0] == target[0] == 1 and source[3] == target[3] and source[1] * source[2] == target[1] * target[2]
        assert 4 in (source[1], target[1])
    assert "MEAN" not in m.ops  # means are convolutions or AVERAGE_POOL_2D, which CMSIS-NN accelerates
    # Nine blocks, each with three depthwise convs (frequency, frequency average, temporal), none of them as a grouped
    # CONV_2D (CMSIS-NN's conv takes no groups), and no frequency pool left: one AVERAGE_POOL_2D, the head's.
    assert m.ops.count("DEPTHWISE_CONV_2D") == 27 and m.ops.count("AVERAGE_POOL_2D") == 1
    for op in interpreter._get_ops_details():
        if op["op_name"] == "CONV_2D":
            assert details[op["inputs"][1]]["shape"][3] == details[op["inputs"][0]]["shape"][3], op
    # Every MUL's scales make TFLite (float32 multiplier) and TFLM (double) agree on all operand pairs.
    assert m.graph["rewrites"]["ops_unaligned"] == []
    for op in interpreter._get_ops_details():
        if op["op_name"] == "MUL":
            assert mul_engines_agree(*(details[i]["quantization"] for i in (*op["inputs"], *op["outputs"]))), op
    graph = onnx.load(out / m.files["onnx"])
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == m.graph["onnx_opset"] == 17
    assert not {"Transpose", "Reshape", "Gather", "BatchNormalization", "Constant"} & {n.op_type for n in graph.graph.node}


@pytest.mark.slow
def test_teacher_shaped_graph_has_no_layout_ops(tmp_path):
    """The teacher keeps full resolution, so each block Residual Normalization reads a NormalBlock's sum
    directly, where the student's reads a max-pool. A narrow teacher (c = 8; the teacher's 256 × 44 input and
    blocks) got 21 TRANSPOSEs and grouped CONV_2Ds from onnx2tf, as the full one (≈ 1 GMAC, minutes to convert)
    got 22: this converts the narrow one with the converter's own worker."""
    torch.manual_seed(0)
    model = BCResNet(c=8, student=False).eval()
    for module in model.modules():  # batch-norm statistics away from (0, 1), so band constants differ
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.input_norm = torch.nn.Identity()  # the integer front end computes it, as for the student
    onnx_path = tmp_path / "teacher.onnx"
    export_onnx(model, (1, 256, 44), onnx_path)
    features = np.random.default_rng(0).normal(0.0, 1.0, (4, 256, 44, 1)).astype(np.float32)
    _run_tf_worker(onnx_path, tmp_path, features, ConvertOptions(), tmp_path / "convert.log", False, tmp_path / "convert.log")
    for name in ("model_float32.tflite", "model_int8.tflite"):
        ops = analysis.op_names(analysis.reference_interpreter((tmp_path / name).read_bytes()))
        assert not LAYOUT_OPS & set(ops), (name, ops)
        assert ops.count("RESHAPE") == 1 and ops[-1] == "RESHAPE"  # (1,1,1,10) → (1,10)
        # Nine blocks, each with three depthwise convs (frequency, frequency average, temporal): none became a
        # grouped CONV_2D.
        assert ops.count("DEPTHWISE_CONV_2D") == 27, (name, ops)
    # ... and the float graph still computes the model.
    interpreter = analysis.reference_interpreter((tmp_path / "model_float32.tflite").read_bytes())
    with torch.no_grad():
        expected = model(torch.from_numpy(features.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.stack([analysis.invoke(interpreter, x) for x in features])
    assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max()


def test_tails_give_the_exact_percentile_of_a_stream():
    rng = np.random.default_rng(1)
    chunks = [rng.standard_t(3, size=n).astype(np.float32) for n in (500, 3, 2000, 1)]
    every = np.sort(np.concatenate(chunks))
    beyond = int(1e-3 * every.size)
    tails = _Tails(beyond + 1)
    for chunk in chunks:
        tails.add(chunk)
    # beyond values lie strictly below the low bound and above the high one.
    assert tails.low.max() == every[beyond] and tails.high.min() == every[-1 - beyond]


def _quantization(flatbuffer: bytes) -> dict[str, tuple[float, int]]:
    """Scale and zero point of the model's input and of every operator's int8 output (the activations)."""
    interpreter = analysis.reference_interpreter(flatbuffer)
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    activations = [interpreter.get_input_details()[0]["index"], *(op["outputs"][0] for op in interpreter._get_ops_details())]
    return {details[i]["name"]: analysis.tensor_quantization(details[i]) for i in activations if details[i]["dtype"] == np.int8}


def test_activation_percentile_option_keeps_the_default_and_takes_100_as_min_max():
    assert ConvertOptions(**_percentile_option(None)).activation_percentile == INT8_ACTIVATION_PERCENTILE
    assert ConvertOptions(**_percentile_option(100.0)).activation_percentile is None
    assert ConvertOptions(**_percentile_option(99.9)).activation_percentile == 99.9
    assert ConvertOptions(**_percentile_option(None, "int16"), activations="int16").activation_percentile == INT8_ACTIVATION_PERCENTILE


@pytest.mark.slow
def test_activation_ranges_narrow_to_the_percentile_and_only_the_intermediate_ones(tmp_path):
    """The converter's own min/max, the same through mcuasc's calibrate-narrow-quantize path at percentile 100,
    and narrowed at 99.99: every intermediate range within min/max, many of them narrower, input and output
    (the front end's scale, the logits) unchanged."""
    torch.manual_seed(0)
    model = BCResNet(c=8, student=True).eval()
    model.input_norm = torch.nn.Identity()
    onnx_path = tmp_path / "student.onnx"
    export_onnx(model, (1, 256, 44), onnx_path)
    features = np.random.default_rng(0).normal(0.0, 1.0, (8, 256, 44, 1)).astype(np.float32)
    quantization = {}
    for percentile in (None, 100.0, 99.99):
        work = tmp_path / str(percentile)
        work.mkdir()
        _run_tf_worker(onnx_path, work, features, ConvertOptions(activation_percentile=percentile), work / "convert.log", False,
                       work / "convert.log")
        quantization[percentile] = _quantization((work / "model_int8.tflite").read_bytes())
    assert quantization[100.0] == quantization[None]
    minmax, narrowed = quantization[None], quantization[99.99]
    assert narrowed.keys() == minmax.keys()
    interpreter = analysis.reference_interpreter((tmp_path / "None" / "model_int8.tflite").read_bytes())
    boundary = {interpreter.get_input_details()[0]["name"], interpreter.get_output_details()[0]["name"]}
    assert all(narrowed[name] == minmax[name] for name in boundary)
    intermediate = [name for name in minmax if name not in boundary]
    assert all(narrowed[name][0] <= minmax[name][0] * (1 + 1e-6) for name in intermediate)
    # Small tensors (fewer values than 1 / tail fraction: time means, the head) and fixed-scale ones (LOGISTIC) keep
    # their ranges; on random features the full-size ones narrow by a few percent (a Gaussian's max over 10⁵ values
    # against its 99.99th percentile).
    shrunk = sum(narrowed[name][0] < 0.99 * minmax[name][0] for name in intermediate)
    assert shrunk > len(intermediate) // 4
    report = json.loads((tmp_path / "99.99" / "activation_ranges.json").read_text())
    assert report["percentile"] == 99.99 and 0 < report["narrowed"] <= report["tensors"]
    assert not (tmp_path / "None" / "activation_ranges.json").exists()


@pytest.mark.slow
def test_tflm_runs_the_model_in_the_measured_arena_bit_exact_with_the_reference(converted, scenes):
    m, out = converted.manifest, converted.out_dir
    flatbuffer = (out / m.files["tflite"]).read_bytes()
    with pytest.raises(analysis.TflmError):
        analysis.tflm_interpreter(flatbuffer, m.tflm_arena_bytes - 16)
    tflm = analysis.tflm_interpreter(flatbuffer, m.tflm_arena_bytes)
    reference = analysis.reference_interpreter(flatbuffer)
    clips = TauDataset.open(scenes).split("evaluate")[:3]
    features = IntegerFrontend(m.frontend)(load_pcm(clips, m.frontend))
    for x in features:
        assert np.array_equal(analysis.tflm_invoke(tflm, x), analysis.invoke(reference, x))
    # The offline memory plan is what TFLM used: the arena holds the plan's activations plus TFLM's own
    # bookkeeping (≈ 50 KB for the student's ~170 operators on this 64-bit host).
    plan = m.graph["memory_plan"]
    assert plan["lower_bound_bytes"] <= plan["activation_bytes"] < m.tflm_arena_bytes < plan["activation_bytes"] + 64 * 1024


@pytest.mark.slow
def test_conversion_is_deterministic(converted, student, scenes, tmp_path):
    again = convert(student, tmp_path, data=scenes)
    first = (converted.out_dir / converted.manifest.files["tflite"]).read_bytes()
    assert (tmp_path / again.manifest.files["tflite"]).read_bytes() == first
    assert again.manifest.hashes == converted.manifest.hashes


@pytest.mark.slow
def test_mobilenetv2_converts_and_runs_in_tflm(scenes, tmp_path):
    checkpoint = _trained(scenes, "mobilenetv2-ca", tmp_path / "mnv2.pt", epochs=1)
    result = convert(checkpoint, tmp_path / "out", data=scenes)
    m = result.manifest
    assert m.input.shape == (1, 128, 36, 3) and m.frontend.deltas
    assert not LAYOUT_OPS & set(m.ops) and "MEAN" not in m.ops
    assert m.parameters == sum(p.numel() for p in load_checkpoint(checkpoint).build_model().parameters())
    flatbuffer = (result.out_dir / m.files["tflite"]).read_bytes()
    analysis.tflm_interpreter(flatbuffer, m.tflm_arena_bytes)


@pytest.mark.slow
def test_int16_activations_keep_int8_input_output_and_weights_and_tflm_bit_exact(scenes, tmp_path):
    """--activations int16 on the nRF52840 recipe: TFLite's 16x8 kernels between an int8 input (CAST, exact) and
    an int8 output, int8 per-channel weights, int64 biases; TFLM computes the reference kernels' logits."""
    checkpoint = _trained(scenes, "bcresnet-nrf52840", tmp_path / "nrf.pt", epochs=1)
    result = _run("convert", "nrf.pt", "--data", str(scenes), "--activations", "int16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    m = load_manifest(find_manifest(tmp_path))
    assert m.graph["activations"] == ACTIVATIONS["int16"] and "int64 biases" in m.graph["weights"]
    assert m.graph["activation_ranges"] == {"method": "minmax"}  # the int8 percentile is not applied to int16
    flatbuffer = (tmp_path / m.files["tflite"]).read_bytes()
    interpreter = analysis.reference_interpreter(flatbuffer, preserve_all_tensors=True)
    ops = interpreter._get_ops_details()
    assert ops[0]["op_name"] == "CAST" and ops[-1]["op_name"] == "QUANTIZE"
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = {"CONV_2D", "DEPTHWISE_CONV_2D"}
    for op in ops[1:-1]:
        assert all(tensors[i]["dtype"] == np.int16 for i in op["outputs"]), op
        if op["op_name"] in kinds:
            assert tensors[op["inputs"][1]]["dtype"] == np.int8 and len(tensors[op["inputs"][1]]["quantization_parameters"]["scales"]) > 1
            assert tensors[op["inputs"][2]]["dtype"] == np.int64
    # int8 input and output; the front end feeds the model with the symmetric int8 quantization CAST widens exactly.
    input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    assert (m.frontend.output_scale, m.frontend.output_zero_point) == analysis.tensor_quantization(input_detail)
    assert m.frontend.output_zero_point == 0
    clips = TauDataset.open(scenes).split("evaluate")[:3]
    features = IntegerFrontend(m.frontend)(load_pcm(clips, m.frontend))
    tflm = analysis.tflm_interpreter(flatbuffer, m.tflm_arena_bytes)
    for x in features:
        logits = analysis.invoke(interpreter, x)
        widened = interpreter.get_tensor(ops[0]["outputs"][0])
        assert np.array_equal(widened, x[None].astype(np.int16))
        assert analysis.tensor_quantization(tensors[ops[0]["outputs"][0]]) == (m.input.scale, 0)
        assert np.array_equal(analysis.tflm_invoke(tflm, x), logits)
    assert m.fidelity["tflm_bit_exact_clips"] == m.fidelity["clips"]
    # The same checkpoint in int8: the int16 graph has the same operators plus the CAST and the QUANTIZE.
    int8 = convert(checkpoint, tmp_path / "int8", data=scenes).manifest
    assert sorted(m.ops) == sorted([*int8.ops, "CAST", "QUANTIZE"])
    # One ADD per block, the broadcast temporal branch (1, 1, T, C): the normal blocks' identity is in their
    # frequency conv (SubSpectralNorm of one band folded into it, see mcuasc.models.export.NormalBlockExport).
    int8_interpreter = analysis.reference_interpreter((tmp_path / "int8" / int8.files["tflite"]).read_bytes())
    int8_tensors = {t["index"]: t for t in int8_interpreter.get_tensor_details()}
    adds = [op for op in int8_interpreter._get_ops_details() if op["op_name"] == "ADD"]
    assert len(adds) == 9
    assert all(sorted(list(int8_tensors[i]["shape"][:2]) for i in op["inputs"])[0] == [1, 1] for op in adds)
    assert m.tflm_arena_bytes > int8.tflm_arena_bytes
    again = convert(checkpoint, tmp_path / "again", data=scenes, options=ConvertOptions(activations="int16")).manifest
    assert (tmp_path / "again" / again.files["tflite"]).read_bytes() == flatbuffer  # deterministic in int16 too


@pytest.mark.slow
def test_int16_student_runs_its_rsqrts_in_int8_and_tflm_bit_exact(converted, student, scenes, tmp_path):
    """TFLite's and TFLM's int16 RSQRT differ: with int16 activations the student's block Residual Normalizations
    take their 1/σ in int8 (QUANTIZE, RSQRT, CAST back), and TFLM computes the reference kernels' logits."""
    m = convert(student, tmp_path, data=scenes, options=ConvertOptions(activations="int16")).manifest
    flatbuffer = (tmp_path / m.files["tflite"]).read_bytes()
    interpreter = analysis.reference_interpreter(flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    rsqrt = [k for k, op in enumerate(ops) if op["op_name"] == "RSQRT"]
    assert len(rsqrt) == converted.manifest.ops.count("RSQRT") > 0
    for k in rsqrt:
        assert [ops[k - 1]["op_name"], ops[k + 1]["op_name"]] == ["QUANTIZE", "CAST"]
        assert tensors[ops[k]["inputs"][0]]["dtype"] == tensors[ops[k]["outputs"][0]]["dtype"] == np.int8
        assert tensors[ops[k - 1]["inputs"][0]]["dtype"] == tensors[ops[k + 1]["outputs"][0]]["dtype"] == np.int16
        assert analysis.tensor_quantization(tensors[ops[k]["outputs"][0]]) == analysis.tensor_quantization(tensors[ops[k + 1]["outputs"][0]])
    assert m.fidelity["tflm_bit_exact_clips"] == m.fidelity["clips"]
    # Every int16 MUL and SUB has equal float32 and double multipliers (the SUBs of two products through one of them).
    assert m.graph["rewrites"]["ops_unaligned"] == [] and m.graph["rewrites"]["sub_scales_aligned"] > 0
    clips = TauDataset.open(scenes).split("evaluate")[:2]
    features = IntegerFrontend(m.frontend)(load_pcm(clips, m.frontend))
    tflm = analysis.tflm_interpreter(flatbuffer, m.tflm_arena_bytes)
    for x in features:
        assert np.array_equal(analysis.tflm_invoke(tflm, x), analysis.invoke(interpreter, x))


@pytest.mark.slow
def test_cli_convert_with_no_flags_announces_the_fallback_and_writes_here(tmp_path):
    _untrained_checkpoint(tmp_path / "student.pt")
    result = subprocess.run([*mcuasc_command(), "convert", "student.pt"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "synthetic scene set" in " ".join(result.stderr.split())
    assert {"student.onnx", "student_int8.tflite", "student.manifest.json", "student.convert.log"} <= {p.name for p in tmp_path.iterdir()}
    assert "TFLM arena" in result.stdout
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.slow
def test_cli_convert_validates_on_as_many_clips_as_asked_and_bounds_the_agreement(tmp_path):
    _untrained_checkpoint(tmp_path / "student.pt")
    result = _run("convert", "student.pt", "--validation-clips", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    fidelity = load_manifest(find_manifest(tmp_path)).fidelity
    assert fidelity["clips"] == 5
    low, high = fidelity["agreement_ci95"]
    assert f"{fidelity['flips']} flips, 95 % interval {100 * low:.1f}–{100 * high:.1f} %" in " ".join(result.stdout.replace("│", " ").split())
    # Five clips can never show the 99 % goal: whatever the agreement, convert says why.
    notes = " ".join(result.stderr.split())
    assert "--activations int16" in notes or "--validation-clips" in notes


def _run(*args, cwd):
    return subprocess.run([*mcuasc_command(), *args], capture_output=True, text=True, cwd=cwd)


def _assert_clear_error(result, fragment):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert fragment in " ".join(result.stderr.split()), result.stderr


def test_bad_inputs_get_clear_errors_and_nothing_is_overwritten(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _assert_clear_error(_run("convert", "junk.pt", cwd=tmp_path), "not a readable torch checkpoint")
    _assert_clear_error(_run("convert", "missing.pt", cwd=tmp_path), "does not exist")
    _untrained_checkpoint(tmp_path / "student.pt")
    (tmp_path / "empty").mkdir()
    _assert_clear_error(_run("convert", "student.pt", "--calib", "empty", cwd=tmp_path), "holds no .wav files")
    _assert_clear_error(_run("convert", "student.pt", "--calib", "nowhere", cwd=tmp_path), "does not exist")
    _assert_clear_error(_run("convert", "student.pt", "--calib", "empty", "--data", "empty", cwd=tmp_path), "not both")
    _assert_clear_error(_run("convert", "student.pt", "--data", "empty", cwd=tmp_path), "meta.csv")
    _assert_clear_error(_run("convert", "student.pt", "--validation-clips", "0", cwd=tmp_path), "--validation-clips")
    _assert_clear_error(_run("convert", "student.pt", "--activations", "int4", cwd=tmp_path), "choose int8 or int16")
    _assert_clear_error(_run("convert", "student.pt", "--activation-percentile", "40", cwd=tmp_path), "outside (50, 100]")
    _assert_clear_error(_run("convert", "student.pt", "--activations", "int16", "--activation-percentile", "99.999",
                             cwd=tmp_path), "for int8 activations")
    (tmp_path / "student.onnx").write_text("mine")
    _assert_clear_error(_run("convert", "student.pt", cwd=tmp_path), "was not written by mcuasc convert")
    assert (tmp_path / "student.onnx").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    _assert_clear_error(_run("convert", "student.pt", "--out", "afile", cwd=tmp_path), "pass a writable --out")


def test_unknown_architecture_is_refused(tmp_path):
    path = _untrained_checkpoint(tmp_path / "student.pt")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet-9000"
    torch.save(payload, path)
    result = _run("convert", "student.pt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "resnet-9000" in result.stderr
