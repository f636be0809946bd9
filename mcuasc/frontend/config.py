"""FrontendConfig: every decision of the log-mel front end, frozen, and serialisable into the manifest."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuasc.errors import InputError

FORMAT = "mcuasc.frontend/1"


def default_quantization(floor_db: float, ceiling_db: float = 70.0) -> tuple[float, int]:
    """int8 (scale, zero point) mapping [floor_db, ceiling_db] onto [-128, 127].

    Used until a converted model provides its own input quantization.
    """
    scale = (ceiling_db - floor_db) / 255.0
    return scale, int(round(-128 - floor_db / scale))


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel front end: framing, mel filterbank, log, optional Δ/ΔΔ, int8 output quantization.

    Features are laid out H×W×C = mel bands × frames × channels, the NHWC order the int8 model input expects.
    Framing is centred: the clip is zero-padded by n_fft/2 on both sides, so a clip of L samples gives
    1 + L // hop STFT frames (44 for 1 s at 44.1 kHz with hop 1024). With deltas, Δ and ΔΔ use the HTK
    regression over ±(delta_width // 2) frames and only frames where ΔΔ is fully defined are kept
    (44 - 4·2 = 36 for width 5), which is how the seed's MobileNetV2 input comes to 128 × 36 × 3.
    """

    name: str = "bcresnet"
    sample_rate: int = 44100
    clip_seconds: float = 1.0
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 1024
    window: str = "hamming"  # periodic ("asymmetric") window, centred in n_fft when win_length < n_fft
    n_mels: int = 256
    fmin: float = 0.0
    fmax: float = 22050.0
    mel_scale: str = "slaney"  # "slaney" (librosa's default) or "htk"
    mel_norm: str = "none"  # "none" (triangles of height 1) or "slaney" (area-normalised)
    power: int = 2  # 2: power spectrum, 1: magnitude; features are 10·log10 of power = 20·log10 of magnitude
    log_floor_db: float = -100.0
    deltas: bool = False
    # Residual Normalization of the log-mel per clip (BC-ResNet's input norm, moved out of the int8 model by
    # convert): λ·x + (x − mean)/sqrt(var + eps) per band, statistics over the clip's frames, in dB.
    residual_norm: bool = False
    residual_norm_lambda: float = 0.1
    residual_norm_eps_db2: float = 1.0
    delta_width: int = 5
    output_scale: float = 170.0 / 255.0
    output_zero_point: int = 22
    quantization_source: str = "default"  # "default" until a converted model fills in its input quantization

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.sample_rate, int) or self.sample_rate < 1000:
            problems.append(f"sample_rate must be an integer ≥ 1000 Hz, got {self.sample_rate!r}")
        if self.n_fft < 16 or self.n_fft & (self.n_fft - 1):
            problems.append(f"n_fft must be a power of two ≥ 16, got {self.n_fft}")
        if not 1 <= self.win_length <= self.n_fft:
            problems.append(f"win_length must be between 1 and n_fft={self.n_fft}, got {self.win_length}")
        if self.hop_length < 1:
            problems.append(f"hop_length must be ≥ 1, got {self.hop_length}")
        if self.window not in WINDOWS:
            problems.append(f"window must be one of {sorted(WINDOWS)}, got {self.window!r}")
        if not 1 <= self.n_mels <= self.n_fft // 2 + 1:
            problems.append(f"n_mels must be between 1 and n_fft/2+1={self.n_fft // 2 + 1}, got {self.n_mels}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(
                f"need 0 ≤ fmin < fmax ≤ sample_rate/2 = {self.sample_rate / 2:g}, got fmin={self.fmin}, fmax={self.fmax}"
            )
        if self.mel_scale not in ("slaney", "htk"):
            problems.append(f"mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.mel_norm not in ("none", "slaney"):
            problems.append(f"mel_norm must be 'none' or 'slaney', got {self.mel_norm!r}")
        if self.power not in (1, 2):
            problems.append(f"power must be 1 (magnitude) or 2 (power), got {self.power}")
        if not -200.0 <= self.log_floor_db <= 0.0:
            problems.append(f"log_floor_db must be between -200 and 0 dB, got {self.log_floor_db}")
        if self.delta_width < 3 or self.delta_width % 2 == 0 or self.delta_width > 9:
            problems.append(f"delta_width must be odd, between 3 and 9, got {self.delta_width}")
        if not (isinstance(self.output_scale, (int, float)) and math.isfinite(self.output_scale) and self.output_scale > 0):
            problems.append(f"output_scale must be a positive number, got {self.output_scale!r}")
        if not -128 <= self.output_zero_point <= 127:
            problems.append(f"output_zero_point must be within int8 range, got {self.output_zero_point}")
        if self.residual_norm and self.deltas:
            problems.append("residual_norm applies to the log-mel alone; it cannot be combined with deltas")
        if not 0.0 <= self.residual_norm_lambda <= 10.0:
            problems.append(f"residual_norm_lambda must be between 0 and 10, got {self.residual_norm_lambda}")
        if not 1e-3 <= self.residual_norm_eps_db2 <= 1e4:
            problems.append(f"residual_norm_eps_db2 must be between 0.001 and 10000 dB², got {self.residual_norm_eps_db2}")
        if self.clip_seconds <= 0 or self.clip_seconds > 60:
            problems.append(f"clip_seconds must be in (0, 60], got {self.clip_seconds}")
        elif not problems and self.n_frames < 1:
            problems.append(
                f"a {self.clip_seconds} s clip gives {self.n_stft_frames} frames, too few for Δ/ΔΔ of width {self.delta_width}"
            )
        if problems:
            raise InputError("invalid front-end config: " + "; ".join(problems) + ".")

    # Derived sizes: properties, never stored, so they cannot disagree with the fields.
    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_stft_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_length

    @property
    def delta_context(self) -> int:
        """Frames lost at each edge: Δ needs ±N, ΔΔ another ±N."""
        return 2 * (self.delta_width // 2) if self.deltas else 0

    @property
    def n_frames(self) -> int:
        return self.n_stft_frames - 2 * self.delta_context

    @property
    def n_channels(self) -> int:
        return 3 if self.deltas else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Feature tensor shape, H×W×C = mel bands × frames × channels."""
        return (self.n_mels, self.n_frames, self.n_channels)

    def with_quantization(self, scale: float, zero_point: int, source: str) -> FrontendConfig:
        return dataclasses.replace(
            self, output_scale=float(scale), output_zero_point=int(zero_point), quantization_source=source
        )

    # Serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontendConfig:
        if not isinstance(data, dict):
            raise InputError("a front-end config must be a JSON object; write one with FrontendConfig.to_json().")
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise InputError(f"front-end config format {fmt!r} is not {FORMAT!r}; regenerate it with this mcuasc.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise InputError(f"front-end config has unknown keys {unknown}; remove them (known: {sorted(fields)}).")
        typed = {}
        for key, value in data.items():
            want = {"int": int, "float": float, "str": str, "bool": bool}[fields[key].type]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise InputError(f"front-end config key {key!r} must be {want.__name__}, got {value!r}.")
            typed[key] = value
        return cls(**typed)

    @classmethod
    def from_json(cls, text: str) -> FrontendConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"front-end config is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file.") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> FrontendConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"front-end config {path} does not exist; check the path.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read front-end config {path} ({exc}); pass a readable JSON file.") from None
        return cls.from_json(text)


WINDOWS = {"hamming", "hann"}


def _preset(**overrides: Any) -> FrontendConfig:
    floor = overrides.get("log_floor_db", -100.0)
    scale, zero_point = default_quantization(floor)
    return FrontendConfig(**{"output_scale": scale, "output_zero_point": zero_point, **overrides})


PRESETS: dict[str, FrontendConfig] = {
    # Seed §2.3: Hamming 2048, 50 % overlap, 256 log-mel bands → 256 × 44 × 1.
    "bcresnet": _preset(name="bcresnet"),
    # Seed §2.3: 128 log-mel bands plus Δ and ΔΔ → 128 × 36 × 3.
    "mobilenetv2": _preset(name="mobilenetv2", n_mels=128, deltas=True),
    # DCASE2022 baseline: 40 ms asymmetric Hamming in a 2048 FFT, 20 ms hop, 40 Slaney mels, magnitude → 40 × 51.
    "dcase-baseline": _preset(name="dcase-baseline", win_length=1764, hop_length=882, n_mels=40, power=1),
    # The nRF52840 board recipe: 16 kHz (its PDM microphone tops out near 20.8 kHz), Hamming 1024 / 512,
    # 64 log-mel bands → 64 × 32 × 1.
    "bcresnet-16k": _preset(name="bcresnet-16k", sample_rate=16000, n_fft=1024, win_length=1024, hop_length=512,
                            n_mels=64, fmax=8000.0),
}


def preset(name: str) -> FrontendConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown front-end preset {name!r}; choose one of {', '.join(PRESETS)}.") from None
