"""TFLite's int8 fixed-point arithmetic where mcuasc needs it on the host: the MUL kernel's multiplier, as TFLite
and TFLM each derive it, and the kernel itself, for every operand pair at once (int16 MULs, with int16
activations, derive their multiplier the same way).

TFLite's MUL computes its real multiplier sa·sb/so in float32 (its Prepare multiplies and divides the tensors'
float scales), TFLM in double. The two can round to different 31-bit multipliers, and then the engines disagree by
one step on rare operand pairs. (Measured on TFLite 2.19 / ai-edge-litert 2.1.0 and the tflite-micro wheel.)
"""

from __future__ import annotations

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


def _saturating_rounding_doubling_high_mul(a: np.ndarray, b: int) -> np.ndarray:
    product = a * b
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    total = product + nudge
    return np.where(total >= 0, total >> 31, -((-total) >> 31))  # C's division truncates toward zero


def _rounding_divide_by_power_of_two(x: np.ndarray, exponent: int) -> np.ndarray:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def int8_mul(a: np.ndarray, b: np.ndarray, za: int, zb: int, zo: int, multiplier: tuple[int, int]) -> np.ndarray:
    """The int8 MUL kernel without fused activation: (a − za)(b − zb) · multiplier + zo, saturated."""
    q, shift = multiplier
    product = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb) * (1 << max(shift, 0))
    scaled = _rounding_divide_by_power_of_two(_saturating_rounding_doubling_high_mul(product, q), max(-shift, 0))
    return np.clip(scaled + zo, -128, 127)


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
    single, double = mul_multipliers(sa, sb, so)
    if single == double:
        return True
    if bits != 8:
        return False
    a, b = _ALL_PAIRS
    return bool(np.array_equal(int8_mul(a, b, za, zb, zo, single), int8_mul(a, b, za, zb, zo, double)))
