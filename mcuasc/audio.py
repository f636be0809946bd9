"""Reading any WAV into int16 mono PCM at the rate a front end wants; the one audio reader of every command.

Conversions are exact and deterministic: 8-bit unsigned → (v − 128)·256; 24/32-bit → round half up to 16
bits by an arithmetic shift; float → rint(x·32768); each saturated to int16. Multi-channel audio is averaged
in float64 on the source scale, and resampling (scipy's polyphase filter, exact rational ratio) runs in float64
before the one conversion to int16. Everything done to the audio is reported in Audio.notes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.signal

from mcuasc.errors import InputError

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
CONVERT_HINT = "convert it with e.g. 'ffmpeg -i IN -c:a pcm_s16le OUT.wav'"


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # int16, mono, at sample_rate
    sample_rate: int
    source_rate: int
    source_channels: int
    source_format: str
    notes: tuple[str, ...]
    path: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class _Format:
    encoding: int
    channels: int
    rate: int
    block_align: int
    bits: int


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"audio file {path} does not exist; check the path.")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an audio file; pass a .wav file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read audio file {path} ({exc.strerror}); check its permissions.") from None
    if not data:
        raise InputError(f"audio file {path} is empty (0 bytes); pass a WAV file with audio in it.")
    return data


def _parse_format(chunk: bytes, path: Path) -> _Format:
    if len(chunk) < 16:
        raise InputError(f"{path} has a truncated 'fmt ' chunk; the file is damaged, re-export it.")
    encoding, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", chunk[:16])
    if encoding == EXTENSIBLE:
        if len(chunk) < 40:
            raise InputError(f"{path} has a truncated extensible 'fmt ' chunk; the file is damaged, re-export it.")
        encoding = struct.unpack("<H", chunk[24:26])[0]  # first two bytes of the sub-format GUID
    if channels == 0:
        raise InputError(f"{path} declares 0 channels; the file is damaged, re-export it.")
    if rate == 0:
        raise InputError(f"{path} declares a sample rate of 0 Hz; the file is damaged, re-export it.")
    supported = (encoding == PCM and bits in (8, 16, 24, 32)) or (encoding == IEEE_FLOAT and bits in (32, 64))
    if not supported or block_align != channels * bits // 8:
        kind = {PCM: "PCM", IEEE_FLOAT: "float", 6: "A-law", 7: "µ-law"}.get(encoding, f"format 0x{encoding:04x}")
        raise InputError(f"{path} is {kind} {bits}-bit audio, which mcuasc does not read; {CONVERT_HINT}.")
    return _Format(encoding, channels, rate, block_align, bits)


def _chunks(data: bytes, path: Path) -> tuple[_Format, bytes, list[str]]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] == b"RIFF" and len(data) < 12:
            raise InputError(f"{path} is truncated inside its RIFF header; the file is damaged, re-export it.")
        raise InputError(f"{path} is not a WAV file (no RIFF/WAVE header); {CONVERT_HINT}.")
    fmt: _Format | None = None
    notes: list[str] = []
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _parse_format(body, path)
        elif chunk_id == b"data":
            if fmt is None:
                raise InputError(f"{path} has its audio before its format chunk; re-export it with a standard tool.")
            if len(body) < size:
                whole = len(body) // fmt.block_align
                if whole == 0:
                    raise InputError(f"{path} is truncated: its data chunk holds no complete sample frame; re-export it.")
                notes.append(f"data chunk truncated: read {whole} complete frames of the {size // fmt.block_align} declared")
            return fmt, body[: len(body) // fmt.block_align * fmt.block_align], notes
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise InputError(f"{path} is truncated: it has no format chunk; the file is damaged, re-export it.")
    raise InputError(f"{path} is truncated: it has no data chunk; the file is damaged, re-export it.")


def _decode(raw: bytes, fmt: _Format) -> np.ndarray:
    """Interleaved samples → (frames, channels) at source scale: int64 for PCM, float64 for float."""
    if fmt.encoding == IEEE_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float64)
    elif fmt.bits == 8:
        x = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 128
    elif fmt.bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.int64)
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        x = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(x >= 1 << 23, x - (1 << 24), x)
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    return x.reshape(-1, fmt.channels)


def _to_int16_exact(x: np.ndarray, bits: int) -> np.ndarray:
    """Integer samples of `bits` bits → int16, round half up, saturated."""
    if bits == 8:
        return (x * 256).astype(np.int16)
    if bits == 16:
        return x.astype(np.int16)
    shift = bits - 16
    return np.clip((x + (1 << (shift - 1))) >> shift, -32768, 32767).astype(np.int16)


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """Float audio (full scale ±1) → int16 with rounding to nearest and saturation."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path, sample_rate: int) -> Audio:
    """Read a WAV file as int16 mono at sample_rate; errors are InputErrors naming the problem and the fix."""
    path = Path(path)
    fmt, raw, notes = _chunks(_read_bytes(path), path)
    frames = _decode(raw, fmt)
    if frames.shape[0] == 0:
        raise InputError(f"{path} contains no audio samples; pass a WAV file with audio in it.")
    is_float = fmt.encoding == IEEE_FLOAT
    if is_float and not np.all(np.isfinite(frames)):
        raise InputError(f"{path} contains NaN or infinite samples; re-export it from its source.")
    full_scale = 1.0 if is_float else float(1 << (fmt.bits - 1))
    source_format = f"{'float' if is_float else 'PCM'} {fmt.bits}-bit"

    if fmt.channels == 1 and fmt.rate == sample_rate:
        mono = frames[:, 0]
        samples = float_to_int16(mono) if is_float else _to_int16_exact(mono, fmt.bits)
    else:
        signal = frames.astype(np.float64).mean(axis=1) / full_scale
        if fmt.channels > 1:
            notes.append(f"downmixed {fmt.channels} channels to mono")
        if fmt.rate != sample_rate:
            ratio = Fraction(sample_rate, fmt.rate)
            signal = scipy.signal.resample_poly(signal, ratio.numerator, ratio.denominator)
            notes.append(f"resampled {fmt.rate} Hz → {sample_rate} Hz (polyphase, up {ratio.numerator} / down {ratio.denominator})")
        samples = float_to_int16(signal)
    return Audio(samples, sample_rate, fmt.rate, fmt.channels, source_format, tuple(notes), str(path))


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, *, bits: int = 16, float_format: bool = False) -> None:
    """Write int16 samples (n,) or (n, channels) as 16/24/32-bit PCM, scaled up exactly, or as 32-bit float."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise ValueError("write_wav takes int16 samples; convert float audio with float_to_int16 first")
    frames = samples.reshape(len(samples), -1).astype(np.int64)
    channels = frames.shape[1]
    if float_format:
        payload, encoding, bits = (frames / 32768.0).astype("<f4").tobytes(), IEEE_FLOAT, 32
    elif bits == 16:
        payload, encoding = frames.astype("<i2").tobytes(), PCM
    elif bits == 24:
        v = (frames * 256).ravel() & 0xFFFFFF
        payload, encoding = np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1).astype(np.uint8).tobytes(), PCM
    elif bits == 32:
        payload, encoding = (frames * 65536).astype("<i4").tobytes(), PCM
    else:
        raise ValueError(f"write_wav writes 16, 24 or 32-bit PCM or 32-bit float, not {bits}-bit")
    block_align = channels * bits // 8
    header = struct.pack("<HHIIHH", encoding, channels, sample_rate, sample_rate * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(header)) + header + b"data" + struct.pack("<I", len(payload)) + payload
    if len(payload) & 1:
        body += b"\0"
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def fit_to_clip(samples: np.ndarray, n_samples: int) -> tuple[np.ndarray, str | None]:
    """One clip's policy: zero-pad at the end when short, keep the start when long; say which."""
    n = len(samples)
    if n == n_samples:
        return samples, None
    if n < n_samples:
        padded = np.zeros(n_samples, dtype=samples.dtype)
        padded[:n] = samples
        return padded, f"padded {n} samples to {n_samples} with silence at the end"
    return samples[:n_samples], f"kept the first {n_samples} of {n} samples (one clip); slide windows over long audio instead"


def sliding_windows(samples: np.ndarray, n_samples: int, hop: int) -> np.ndarray:
    """(windows, n_samples) covering the audio with the given hop; the last one zero-padded."""
    count = 1 + max(0, -(-(len(samples) - n_samples) // hop))
    padded = np.zeros((count - 1) * hop + n_samples, dtype=samples.dtype)
    padded[: len(samples)] = samples
    return np.lib.stride_tricks.sliding_window_view(padded, n_samples)[::hop].copy()
