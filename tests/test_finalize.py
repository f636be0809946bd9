"""mcuasc.convert.finalize on hand-built one-op models, run by both real engines (TFLite reference kernels, TFLM)."""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from mcuasc.convert import analysis
from mcuasc.convert.finalize import align_multipliers, grouped_convs_as_depthwise
from mcuasc.convert.fixed_point import (int8_rsqrt, mul_engines_agree, mul_multipliers, quantized_sub, rsqrt_engines_agree,
                                        rsqrt_multipliers, sub_engines_agree, sub_multipliers)
from mcuasc.simulate.localise import OperatorComparer

# The quantization of a MUL in a converted BC-ResNet student (inverse std × a per-band factor) on which TFLite's
# reference kernel and TFLM disagreed by one step for 4 of the 65,536 operand pairs.
STUDENT_MUL = ((0.007621390745043755, -128), (0.005480390973389149, -128), (0.004974668379873037, -128))
# The quantization of an RSQRT (a SubSpectralNorm's inverse standard deviation) in a BC-ResNet student trained 120
# epochs, on which the engines disagreed for 1 of the 256 inputs, and then on about half of all clips.
STUDENT_RSQRT = ((0.02782462164759636, -128), (0.008835520595312119, -128))
# The quantization of a SUB in the 2-epoch test student converted with 99.999th-percentile ranges. TFLite and the
# TFLM runtime derive a SUB's multipliers in double, TFLM's sources (tflite-micro 90b983c, sub_common.cc) in float32;
# for these scales the two disagree on 3 of the 65,536 operand pairs, and the firmware built from those sources gave
# logits 1-2 steps off simulate's on the emulated Cortex-M4 (tests/test_firmware.py, with a TFLM tree).
STUDENT_SUB = ((0.03828424587845802, -128), (0.004031209275126457, -128), (0.03958582133054733, -102))


def _tensor(shape, quant, name, buffer=0, type_=schema.TensorType.INT8):
    tensor = schema.TensorT()
    tensor.shape, tensor.name, tensor.type, tensor.buffer = np.array(shape, dtype=np.int32), name, type_, buffer
    if quant is not None:
        tensor.quantization = schema.QuantizationParametersT()
        scales, zeros, dimension = quant
        tensor.quantization.scale = np.array(scales, dtype=np.float32)
        tensor.quantization.zeroPoint = np.array(zeros, dtype=np.int64)
        tensor.quantization.quantizedDimension = dimension
    return tensor


def _model(op_code: int, version: int, tensors, inputs, outputs, op_inputs, options_type, options, buffers=()):
    model = schema.ModelT()
    model.version, model.description = 3, "mcuasc test"
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op_code, op_code, version
    model.operatorCodes = [code]
    empty = schema.BufferT()
    model.buffers = [empty]
    for data in buffers:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buffer)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array(op_inputs, dtype=np.int32), np.array(outputs, dtype=np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, np.array(inputs, dtype=np.int32), np.array(outputs, dtype=np.int32), [op]
    model.subgraphs = [graph]
    return model


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _all_operand_pairs_mul(quant) -> schema.ModelT:
    (sa, za), (sb, zb), (so, zo) = quant
    tensors = [_tensor([65536], ([sa], [za], 0), "a"), _tensor([65536], ([sb], [zb], 0), "b"), _tensor([65536], ([so], [zo], 0), "out")]
    return _model(schema.BuiltinOperator.MUL, 2, tensors, [0, 1], [2], [0, 1], schema.BuiltinOptions.MulOptions, schema.MulOptionsT())


def _all_operand_pairs_sub(quant) -> schema.ModelT:
    tensors = [_tensor([65536], ([s], [z], 0), name) for (s, z), name in zip(quant, ("a", "b", "out"))]
    return _model(schema.BuiltinOperator.SUB, 2, tensors, [0, 1], [2], [0, 1], schema.BuiltinOptions.SubOptions, schema.SubOptionsT())


_A, _B = (v.ravel().astype(np.int8) for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))


def _run_both(flatbuffer: bytes, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    reference = analysis.reference_interpreter(flatbuffer)
    for detail, x in zip(reference.get_input_details(), inputs):
        reference.set_tensor(detail["index"], x)
    reference.invoke()
    expected = reference.get_tensor(reference.get_output_details()[0]["index"])
    tflm = analysis.tflm_interpreter(flatbuffer, 1 << 20)
    for i, x in enumerate(inputs):
        tflm.set_input(x, i)
    tflm.invoke()
    return expected, tflm.get_output(0)


def test_mul_scale_alignment_makes_tflite_and_tflm_agree_on_every_operand_pair():
    a, b = (v.ravel().astype(np.int8) for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))
    model = _all_operand_pairs_mul(STUDENT_MUL)
    reference, tflm = _run_both(_pack(model), [a, b])
    assert 0 < np.count_nonzero(reference != tflm) < 16  # the upstream deviation this rewrite exists for
    single, double = mul_multipliers(*(q[0] for q in STUDENT_MUL))
    assert single != double

    assert not mul_engines_agree(*STUDENT_MUL)  # the host's model of both engines sees it too

    assert align_multipliers(model) == ({"MUL": 1, "RSQRT": 0, "SUB": 0}, [])
    new_scale = float(model.subgraphs[0].tensors[2].quantization.scale[0])
    assert new_scale != STUDENT_MUL[2][0] and abs(new_scale / STUDENT_MUL[2][0] - 1) < 1e-4
    reference, tflm = _run_both(_pack(model), [a, b])
    assert np.array_equal(reference, tflm)
    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 0, "SUB": 0}, [])  # nothing left to align


def test_host_sub_kernel_is_both_engines_on_every_operand_pair():
    """mcuasc's host model of the int8 SUB with its multipliers derived in double against TFLite's reference kernel
    and the TFLM runtime, on all 65,536 operand pairs of the student's SUB and of random quantizations."""
    rng = np.random.default_rng(2)
    randoms = [tuple((float(np.float32(rng.uniform(1e-3, 0.1))), int(rng.integers(-128, 128))) for _ in range(3))
               for _ in range(3)]
    for quant in (STUDENT_SUB, *randoms):
        reference, tflm = _run_both(_pack(_all_operand_pairs_sub(quant)), [_A, _B])
        double, _ = sub_multipliers(*(q[0] for q in quant))
        expected = quantized_sub(_A, _B, quant[0][1], quant[1][1], quant[2][1], double)
        assert np.array_equal(reference, expected) and np.array_equal(tflm, expected), quant


def test_sub_scale_alignment_makes_float32_and_double_multipliers_agree_on_every_operand_pair():
    """The float32 derivation is TFLM's sources', which only a firmware build runs (no TFLM tree here): the host model
    stands for it, checked above with the double multipliers against both engines. The output scale moves until the
    float32 and double multipliers give the same result on every pair; both engines then still agree."""
    (_, z1), (_, z2), (_, zo) = STUDENT_SUB
    double, single = sub_multipliers(*(q[0] for q in STUDENT_SUB))
    assert double != single
    assert np.count_nonzero(quantized_sub(_A, _B, z1, z2, zo, double) != quantized_sub(_A, _B, z1, z2, zo, single)) == 3
    assert not sub_engines_agree(*STUDENT_SUB)

    model = _all_operand_pairs_sub(STUDENT_SUB)
    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 0, "SUB": 1}, [])
    new_scale = float(model.subgraphs[0].tensors[2].quantization.scale[0])
    assert new_scale != STUDENT_SUB[2][0] and abs(new_scale / STUDENT_SUB[2][0] - 1) < 1e-4
    aligned = (*STUDENT_SUB[:2], (new_scale, zo))
    assert sub_engines_agree(*aligned)
    double, single = sub_multipliers(*(q[0] for q in aligned))
    reference, tflm = _run_both(_pack(model), [_A, _B])
    assert np.array_equal(reference, tflm)
    assert np.array_equal(reference, quantized_sub(_A, _B, z1, z2, zo, single))
    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 0, "SUB": 0}, [])


def _rsqrt(in_quant, out_quant, shape: list[int]) -> schema.ModelT:
    (si, zi), (so, zo) = in_quant, out_quant
    tensors = [_tensor(shape, ([si], [zi], 0), "x"), _tensor(shape, ([so], [zo], 0), "y")]
    return _model(schema.BuiltinOperator.RSQRT, 2, tensors, [0], [1], [0], 0, None)


def test_host_rsqrt_kernel_is_each_engines_on_every_input():
    """mcuasc's host model of the int8 RSQRT kernel against both real engines: TFLite's reference kernel with the
    float32-derived multiplier, TFLM with the double one, on every valid input of random quantizations."""
    rng = np.random.default_rng(1)
    for _ in range(6):
        si, so = (float(np.float32(v)) for v in (rng.uniform(1e-3, 0.2), rng.uniform(1e-3, 0.05)))
        zi, zo = (int(v) for v in rng.integers(-128, 60, 2))
        x = np.arange(zi, 128).astype(np.int8)  # both kernels reject inputs below the zero point
        reference, tflm = _run_both(_pack(_rsqrt((si, zi), (so, zo), [len(x)])), [x])
        single, double = rsqrt_multipliers(si, so)
        assert np.array_equal(reference, int8_rsqrt(x, zi, zo, single))
        assert np.array_equal(tflm, int8_rsqrt(x, zi, zo, double))


def test_rsqrt_scale_alignment_makes_tflite_and_tflm_agree_on_every_input():
    x = np.arange(-128, 128).astype(np.int8)
    model = _rsqrt(*STUDENT_RSQRT, [256])
    reference, tflm = _run_both(_pack(model), [x])
    assert np.count_nonzero(reference != tflm) == 1  # the upstream deviation this rewrite exists for
    assert not rsqrt_engines_agree(*STUDENT_RSQRT)

    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 1, "SUB": 0}, [])
    new_scale = float(model.subgraphs[0].tensors[1].quantization.scale[0])
    assert new_scale != STUDENT_RSQRT[1][0] and abs(new_scale / STUDENT_RSQRT[1][0] - 1) < 1e-4
    reference, tflm = _run_both(_pack(model), [x])
    assert np.array_equal(reference, tflm)
    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 0, "SUB": 0}, [])


def test_simulate_names_the_rsqrt_and_the_engine_following_its_formula():
    """simulate's operator search on the unaligned RSQRT: it names the op, and TFLM as the engine that computes
    TFLite's integer formula with the exact (double) multiplier."""
    flatbuffer = _pack(_rsqrt(*STUDENT_RSQRT, [1, 256]))
    divergence = OperatorComparer(flatbuffer, flatbuffer, 1 << 20).first_divergence(np.arange(-128, 128).astype(np.int8))
    assert (divergence.op, divergence.differing, divergence.max_abs_difference) == ("RSQRT", 1, 1)
    assert divergence.follows_integer_formula == "tflm"


def test_grouped_conv_becomes_depthwise_with_identical_outputs():
    rng = np.random.default_rng(0)
    channels, kh = 6, 3
    weights = rng.integers(-127, 128, (channels, kh, 1, 1)).astype(np.int8)
    bias = rng.integers(-500, 500, channels).astype(np.int32)
    weight_scales = list(rng.uniform(0.001, 0.01, channels))
    tensors = [
        _tensor([1, 8, 5, channels], ([0.05], [3], 0), "x"),
        _tensor([channels, kh, 1, 1], (weight_scales, [0] * channels, 0), "w", buffer=1),
        _tensor([channels], None, "b", buffer=2, type_=schema.TensorType.INT32),
        _tensor([1, 8, 5, channels], ([0.02], [-5], 0), "y"),
    ]
    options = schema.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = schema.Padding.SAME, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    model = _model(schema.BuiltinOperator.CONV_2D, 3, tensors, [0], [3], [0, 1, 2], schema.BuiltinOptions.Conv2DOptions,
                   options, buffers=(weights.tobytes(), bias.tobytes()))
    grouped = _pack(model)
    assert grouped_convs_as_depthwise(model) == 1
    depthwise = _pack(model)
    names = analysis.op_names(analysis.reference_interpreter(depthwise))
    assert names == ["DEPTHWISE_CONV_2D"]
    x = rng.integers(-128, 128, (1, 8, 5, channels)).astype(np.int8)
    before, _ = _run_both(grouped, [x])
    after, after_tflm = _run_both(depthwise, [x])
    assert np.array_equal(before, after) and np.array_equal(after, after_tflm)


def test_int16_mul_alignment_gives_both_engines_one_multiplier():
    """int16 MULs (int16 activations) derive their multiplier as int8 ones do: where float32 and double round to
    different multipliers, the output scale moves until they are equal, and the engines then agree."""
    rng = np.random.default_rng(0)
    while True:  # int16 activations: symmetric, zero point 0
        scales = [float(np.float32(s)) for s in rng.uniform(1e-5, 1e-3, 3)]
        single, double = mul_multipliers(*scales)
        if single != double:
            break
    quant = tuple((s, 0) for s in scales)
    assert not mul_engines_agree(*quant, bits=16)
    n = 1 << 17  # pairs, in the 1 MB arena
    tensors = [_tensor([n], ([s], [0], 0), name, type_=schema.TensorType.INT16) for s, name in zip(scales, ("a", "b", "out"))]
    model = _model(schema.BuiltinOperator.MUL, 4, tensors, [0, 1], [2], [0, 1], schema.BuiltinOptions.MulOptions, schema.MulOptionsT())
    a, b = (rng.integers(-32768, 32768, n).astype(np.int16) for _ in range(2))
    reference, tflm = _run_both(_pack(model), [a, b])
    assert np.count_nonzero(reference != tflm) > 0  # the engines' one-step disagreement, on these pairs
    assert align_multipliers(model) == ({"MUL": 1, "RSQRT": 0, "SUB": 0}, [])
    new_scale = float(model.subgraphs[0].tensors[2].quantization.scale[0])
    assert abs(new_scale / scales[2] - 1) < 1e-4
    assert mul_engines_agree(quant[0], quant[1], (new_scale, 0), bits=16)
    reference, tflm = _run_both(_pack(model), [a, b])
    assert np.array_equal(reference, tflm)


def test_int16_mul_out_of_output_reach_aligns_through_the_sum_feeding_it():
    """An int16 MUL of a trained student (x · a per-frequency factor that an ADD wrote) whose float32 and double
    multipliers no output scale within reach makes equal: the ADD's output scale moves too, and the engines agree."""
    a_quant, sum_quant, out_quant = (0.0005513743381015956, 0), (3.993973587057553e-05, 0), (0.0003675936022773385, 0)
    n = 1 << 16
    tensors = [_tensor([n], ([s], [0], 0), name, type_=schema.TensorType.INT16)
               for s, name in ((a_quant[0], "a"), (2e-05, "u"), (2.5e-05, "v"), (sum_quant[0], "sum"), (out_quant[0], "out"))]

    def model():
        built = _model(schema.BuiltinOperator.MUL, 4, [*tensors], [0, 1, 2], [4], [0, 3], schema.BuiltinOptions.MulOptions,
                       schema.MulOptionsT())
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
        code.version = 3
        built.operatorCodes.append(code)
        add = schema.OperatorT()
        add.opcodeIndex, add.inputs, add.outputs = 1, np.array([1, 2], dtype=np.int32), np.array([3], dtype=np.int32)
        add.builtinOptionsType, add.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
        built.subgraphs[0].operators.insert(0, add)
        return built

    rng = np.random.default_rng(0)
    inputs = [rng.integers(-32768, 32768, n).astype(np.int16) for _ in range(3)]
    reference, tflm = _run_both(_pack(model()), inputs)
    assert np.count_nonzero(reference != tflm) > 0  # the engines' one-step disagreement, on these inputs
    assert not mul_engines_agree(a_quant, sum_quant, out_quant, bits=16)
    assert align_multipliers(model(), input_search=0) == ({"MUL": 0, "RSQRT": 0, "SUB": 0}, [1])  # the output alone cannot
    aligned = model()
    assert align_multipliers(aligned) == ({"MUL": 1, "RSQRT": 0, "SUB": 0}, [])
    scales = [float(aligned.subgraphs[0].tensors[i].quantization.scale[0]) for i in (3, 4)]
    assert all(abs(new / old - 1) < 1e-3 for new, old in zip(scales, (sum_quant[0], out_quant[0])))
    assert mul_engines_agree(a_quant, (scales[0], 0), (scales[1], 0), bits=16)
    reference, tflm = _run_both(_pack(aligned), inputs)
    assert np.array_equal(reference, tflm)


def test_int16_sub_of_two_products_aligns_through_one_of_them():
    """An int16 SUB of a trained student (a Residual Normalization: x · 1/σ minus mean · 1/σ, two MULs) whose ratio of
    input scales float32 and double round to different multipliers: no output scale can fix that, so one MUL's output
    scale moves (with its own multiplier kept equal in both) until the SUB's three multipliers are equal too."""
    mul_a, mul_b, out = 0.0004954694304615259, 3.9743277739034966e-05, 0.00047931872541084886
    factor = float(np.float32(1.0 / 32767))
    rng = np.random.default_rng(3)

    def aligned_input(product: float) -> float:
        """An input scale on which the MUL into `product` starts aligned, so that only the SUB needs the search."""
        while True:
            scale = float(np.float32(product * rng.uniform(0.9, 1.1)))
            if mul_engines_agree((scale, 0), (factor, 0), (product, 0), bits=16):
                return scale

    x, y = aligned_input(mul_a), aligned_input(mul_b)
    assert not sub_engines_agree((mul_a, 0), (mul_b, 0), (out, 0), bits=16)
    n = 1 << 12
    scales = (x, y, factor, mul_a, mul_b, out)
    tensors = [_tensor([n] if name != "f" else [1], ([s], [0], 0), name, type_=schema.TensorType.INT16)
               for s, name in zip(scales, ("x", "y", "f", "a", "b", "out"))]
    model = _model(schema.BuiltinOperator.SUB, 3, tensors, [0, 1, 2], [5], [3, 4], schema.BuiltinOptions.SubOptions,
                   schema.SubOptionsT())
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.MUL
    code.version = 4
    model.operatorCodes.append(code)
    for k, (source, target) in enumerate(((0, 3), (1, 4))):
        mul = schema.OperatorT()
        mul.opcodeIndex, mul.inputs, mul.outputs = 1, np.array([source, 2], dtype=np.int32), np.array([target], dtype=np.int32)
        mul.builtinOptionsType, mul.builtinOptions = schema.BuiltinOptions.MulOptions, schema.MulOptionsT()
        model.subgraphs[0].operators.insert(k, mul)
    inputs = [rng.integers(-32768, 32768, n).astype(np.int16) for _ in range(2)] + [np.array([32767], dtype=np.int16)]
    before, _ = _run_both(_pack(model), inputs)
    assert align_multipliers(model) == ({"MUL": 0, "RSQRT": 0, "SUB": 1}, [])
    moved = [float(model.subgraphs[0].tensors[i].quantization.scale[0]) for i in (3, 4, 5)]
    assert all(abs(new / old - 1) < 2.5e-3 for new, old in zip(moved, (mul_a, mul_b, out)))
    assert sub_engines_agree((moved[0], 0), (moved[1], 0), (moved[2], 0), bits=16)
    assert mul_engines_agree((x, 0), (factor, 0), (moved[0], 0), bits=16)
    assert mul_engines_agree((y, 0), (factor, 0), (moved[1], 0), bits=16)
    reference, tflm = _run_both(_pack(model), inputs)
    assert np.array_equal(reference, tflm) and np.abs(reference.astype(int) - before.astype(int)).max() <= 2
