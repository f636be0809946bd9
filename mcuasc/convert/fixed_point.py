"""TFLite's int8 fixed-point arithmetic where mcuasc needs it on the host: the MUL and RSQRT kernels' multipliers,
as TFLite and TFLM each derive them, and the kernels themselves, for every operand at once (int16 MULs, with int16
activations, derive their multiplier the same way).

TFLite's MUL computes its real multiplier sa·sb/so in float32 (its Prepare multiplies and divides the tensors'
float scales), TFLM in double. Its int8 RSQRT computes 1/(√si·so) with √si·so in float32, the tflite-micro wheel
in double (TFLM's sources have had both). Where the two round to different 31-bit multipliers, the engines
disagree by one step on some inputs. (Measured on TFLite 2.19 / ai-edge-litert 2.1.0 and the tflite-micro wheel.)

SUB is the other way round: TFLite and the tflite-micro wheel derive its three multipliers (each input's scale over
twice the larger one, and that over 2^left_shift times the output scale) in double, while TFLM's sources at
tflite-micro 90b983c (August 2026, sub_common.cc) divide in float32, so a firmware built from such a tree computes
some SUBs one step off the TFLite reference (found on the emulated Cortex-M4, and on the host with that tree's
kernels compiled for x86-64: 3 of the 65,536 operand pairs of a student's SUB). ADD divides in double in both.
"""

from __future__ import annotations

import functools
import math

import numpy as np

Quantization = tuple[float, int]  # (scale, zero point)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = q · 2^(shift − 31) with q a 31-bit integer (std::round)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    q = math.floor(fraction * (1 << 31) + 0.5)
    if q == 1 << 31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    return q, shift


def mul_multipliers(sa: float, sb: float, so: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(TFLite's, TFLM's) multiplier of an int8 MUL: sa·sb/so evaluated in float32, and in double."""
    single = float(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(so))
    double = float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(so))
    return quantize_multiplier(single), quantize_multiplier(double)


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul, elementwise on int32 values held in int64 (or plain ints)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    product = a * b  # at most 2⁶², so int64 holds it
    total = product + np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C's division truncates toward zero
    return np.where((a == _INT32_MIN) & (b == _INT32_MIN), _INT32_MAX, high)


def _rounding_divide_by_power_of_two(x, exponent: int):
    """gemmlowp's RoundingDivideByPOT (round half away from zero), elementwise."""
    x = np.asarray(x, dtype=np.int64)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def _multiply_by_quantized_multiplier(x, multiplier: int, shift: int):
    """TFLite's MultiplyByQuantizedMultiplier, elementwise: x · multiplier · 2^(shift − 31), rounded as the kernels do."""
    left = np.asarray(x, dtype=np.int64) * (1 << max(shift, 0))
    return _rounding_divide_by_power_of_two(_saturating_rounding_doubling_high_mul(left, multiplier), max(-shift, 0))


def int8_mul(a: np.ndarray, b: np.ndarray, za: int, zb: int, zo: int, multiplier: tuple[int, int]) -> np.ndarray:
    """The int8 MUL kernel without fused activation: (a − za)(b − zb) · multiplier + zo, saturated."""
    product = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return np.clip(_multiply_by_quantized_multiplier(product, *multiplier) + zo, -128, 127)


def int8_mul_formula(a: np.ndarray, b: np.ndarray, a_quant: Quantization, b_quant: Quantization,
                     out_quant: Quantization) -> np.ndarray:
    """TFLite's int8 MUL formula with the exact multiplier sa·sb/so (double, as TFLM derives it)."""
    (sa, za), (sb, zb), (so, zo) = a_quant, b_quant, out_quant
    return int8_mul(a, b, za, zb, zo, quantize_multiplier(sa * sb / so))


_ALL_PAIRS = tuple(v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))


def mul_engines_agree(a_quant: Quantization, b_quant: Quantization, out_quant: Quantization, bits: int = 8) -> bool:
    """Whether TFLite's and TFLM's MUL give the same result for every operand pair with these quantizations: all
    65,536 int8 pairs are tried; for int16 (4·10⁹ pairs) the two multipliers must be equal, which is sufficient,
    both engines running the same integer kernel on them."""
    (sa, za), (sb, zb), (so, zo) = a_quant, b_quant, out_quant
    return _same_on_every_pair(*mul_multipliers(sa, sb, so), bits, lambda a, b, m: int8_mul(a, b, za, zb, zo, m))


def _same_on_every_pair(first, second, bits: int, kernel) -> bool:
    """Whether a binary kernel gives the same results with two derivations of its multipliers: equal multipliers do;
    otherwise all 65,536 int8 operand pairs are tried, and int16 ones (4·10⁹ pairs) are taken to differ."""
    if first == second:
        return True
    if bits != 8:
        return False
    a, b = _ALL_PAIRS
    return bool(np.array_equal(kernel(a, b, first), kernel(a, b, second)))


def rsqrt_multipliers(si: float, so: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(TFLite's, the tflite-micro wheel's) output multiplier of an int8 RSQRT: 1/(√si·so) with √si·so in float32,
    and in double."""
    single = 1.0 / float(np.sqrt(np.float32(si)) * np.float32(so))
    double = 1.0 / (math.sqrt(float(np.float32(si))) * float(np.float32(so)))
    return quantize_multiplier(single), quantize_multiplier(double)


def sub_multipliers(s1: float, s2: float, so: float, bits: int = 8) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """(TFLite's and the wheel's, TFLM source's) input 1, input 2 and output multipliers of a quantized SUB: the
    ratios in double, and in float32."""
    left_shift = sub_left_shift(bits)
    s1, s2, so = np.float32(s1), np.float32(s2), np.float32(so)
    twice_max = np.float32(2) * max(s1, s2)  # exact in float32 (a power of two times a float32)
    single = (float(s1 / twice_max), float(s2 / twice_max), float(twice_max / (np.float32(1 << left_shift) * so)))
    double = (float(s1) / float(twice_max), float(s2) / float(twice_max),
              float(twice_max) / float(np.float32(1 << left_shift) * so))
    return tuple(map(quantize_multiplier, double)), tuple(map(quantize_multiplier, single))


def sub_left_shift(bits: int) -> int:
    """The headroom both engines give the operands of a quantized SUB (and ADD): 20 bits for int8, 15 for int16."""
    return 20 if bits == 8 else 15


def quantized_sub(a: np.ndarray, b: np.ndarray, z1: int, z2: int, zo: int, multipliers: tuple[tuple[int, int], ...],
                  bits: int = 8) -> np.ndarray:
    """The quantized SUB kernel without fused activation: each operand, offset and shifted left, scaled by its
    multiplier; the difference scaled by the output multiplier, offset and saturated."""
    headroom = 1 << sub_left_shift(bits)
    m1, m2, mo = multipliers
    x1 = _multiply_by_quantized_multiplier((np.asarray(a, np.int64) - z1) * headroom, *m1)
    x2 = _multiply_by_quantized_multiplier((np.asarray(b, np.int64) - z2) * headroom, *m2)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(_multiply_by_quantized_multiplier(x1 - x2, *mo) + zo, low, high)


def sub_engines_agree(q1: Quantization, q2: Quantization, out_quant: Quantization, bits: int = 8) -> bool:
    """Whether the SUB computes the same with multipliers derived in double (TFLite, the wheel) and in float32
    (TFLM's sources): every int8 operand pair is tried; for int16 the multipliers must be equal."""
    return _same_on_every_pair(*sub_multipliers(q1[0], q2[0], out_quant[0], bits), bits,
                               lambda a, b, m: quantized_sub(a, b, q1[1], q2[1], out_quant[1], m))


def int8_sub_formula(a: np.ndarray, b: np.ndarray, q1: Quantization, q2: Quantization, out_quant: Quantization) -> np.ndarray:
    """TFLite's int8 SUB formula with its multipliers derived in double, as TFLite's Prepare does."""
    a, b = np.broadcast_arrays(a, b)
    return quantized_sub(a, b, q1[1], q2[1], out_quant[1], sub_multipliers(q1[0], q2[0], out_quant[0])[0])


def _srdhm(a: int, b: int) -> int:
    return int(_saturating_rounding_doubling_high_mul(a, b))


def _rdbpot(x: int, exponent: int) -> int:
    return int(_rounding_divide_by_power_of_two(x, exponent))


def _multiply_by_pot(x: int, exponent: int) -> int:
    """gemmlowp's SaturatingRoundingMultiplyByPOT."""
    return _rdbpot(x, -exponent) if exponent < 0 else max(_INT32_MIN, min(_INT32_MAX, x << exponent))


@functools.lru_cache(maxsize=None)
def _inverse_sqrt_times_2_20(value: int) -> int:
    """1/√value in steps of 2⁻²⁰, as the int8 RSQRT kernel computes it (GetInvSqrtQuantizedMultiplierExp: five
    Newton-Raphson steps in gemmlowp Q3.28 fixed point), before its output multiplier."""
    if value <= 1:
        multiplier, shift = _INT32_MAX, 0
    else:
        shift = 11
        while value >= 1 << 29:
            value //= 4
            shift += 1
        pairs = (32 - value.bit_length() - 1) // 2 - 1
        shift -= pairs
        value <<= 2 * pairs
        half_input = _rdbpot(value >> 1, 1)  # Q3.28
        three_halves, x = (1 << 28) + (1 << 27), 1 << 28
        for _ in range(5):
            cube = _multiply_by_pot(_srdhm(_srdhm(x, x), x), 6)
            x = _multiply_by_pot(_srdhm(three_halves, x) - _srdhm(half_input, cube), 3)
        multiplier = _srdhm(x, 1518500250)  # × √2/2 in Q0.31
        if shift < 0:
            multiplier, shift = multiplier << -shift, 0
        shift = -shift
    return int(_multiply_by_quantized_multiplier(1, multiplier, shift + 20))


def int8_rsqrt(x: np.ndarray, zi: int, zo: int, multiplier: tuple[int, int]) -> np.ndarray:
    """The int8 RSQRT kernel on inputs x ≥ zi (the kernels reject smaller ones): the largest output for x = zi."""
    q, shift = multiplier
    inverse = np.array([_inverse_sqrt_times_2_20(int(v) - zi) for v in np.ravel(x)], dtype=np.int64).reshape(np.shape(x))
    scaled = _multiply_by_quantized_multiplier(inverse, q, shift - 20)
    return np.where(np.asarray(x) == zi, 127, np.clip(scaled + zo, -128, 127))


def rsqrt_engines_agree(in_quant: Quantization, out_quant: Quantization) -> bool:
    """Whether TFLite's and TFLM's int8 RSQRT give the same result for every valid input with these quantizations."""
    (si, zi), (so, zo) = in_quant, out_quant
    single, double = rsqrt_multipliers(si, so)
    if single == double:
        return True
    x = np.arange(zi, 128)
    return bool(np.array_equal(int8_rsqrt(x, zi, zo, single), int8_rsqrt(x, zi, zo, double)))


def int8_rsqrt_formula(x: np.ndarray, in_quant: Quantization, out_quant: Quantization) -> np.ndarray:
    """TFLite's int8 RSQRT formula with the exact multiplier 1/(√si·so) (double)."""
    (si, zi), (so, zo) = in_quant, out_quant
    return int8_rsqrt(x, zi, zo, quantize_multiplier(1.0 / (math.sqrt(si) * so)))
