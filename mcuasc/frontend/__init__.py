"""Stage 3, the front end: log-mel features from int16 PCM, in float64 (reference), integer numpy and C."""

from mcuasc.frontend.config import PRESETS, FrontendConfig, preset
from mcuasc.frontend.integer import IntegerFrontend
from mcuasc.frontend.reference import FloatFrontend

__all__ = ["PRESETS", "FloatFrontend", "FrontendConfig", "IntegerFrontend", "preset"]
