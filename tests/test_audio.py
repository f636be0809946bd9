"""The shared WAV reader: every format to exact int16, resampling and downmix announced, clear errors."""

import struct

import numpy as np
import pytest

from mcuasc.audio import fit_to_clip, read_wav, sliding_windows, write_wav
from mcuasc.errors import InputError


def wav_bytes(payload: bytes, *, encoding=1, channels=1, rate=44100, bits=16, extensible=False) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", encoding) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", encoding, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\0"  # an odd-sized foreign chunk with its pad byte
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("bits", [16, 24, 32])
def test_pcm_round_trip_is_exact(tmp_path, bits):
    pcm = np.array([0, 1, -1, 12345, -32768, 32767], dtype=np.int16)
    write_wav(tmp_path / "a.wav", pcm, 44100, bits=bits)
    audio = read_wav(tmp_path / "a.wav", 44100)
    assert np.array_equal(audio.samples, pcm) and audio.notes == ()
    assert audio.source_format == f"PCM {bits}-bit"


def test_24_bit_rounds_half_up_and_saturates(tmp_path):
    values = [0x7FFFFF, -0x800000, 0x80, 0x7F, -0x80, -0x81]
    payload = b"".join(struct.pack("<i", v)[:3] for v in values)
    (tmp_path / "a.wav").write_bytes(wav_bytes(payload, bits=24))
    assert read_wav(tmp_path / "a.wav", 44100).samples.tolist() == [32767, -32768, 1, 0, 0, -1]


def test_8_bit_and_float_formats(tmp_path):
    (tmp_path / "u8.wav").write_bytes(wav_bytes(bytes([128, 255, 0, 129]), bits=8))
    assert read_wav(tmp_path / "u8.wav", 44100).samples.tolist() == [0, 127 * 256, -32768, 256]
    floats = np.array([0.0, 0.5, -1.0, 1.5, -0.25 / 32768], dtype="<f4")
    (tmp_path / "f32.wav").write_bytes(wav_bytes(floats.tobytes(), encoding=3, bits=32))
    assert read_wav(tmp_path / "f32.wav", 44100).samples.tolist() == [0, 16384, -32768, 32767, 0]
    (tmp_path / "f64.wav").write_bytes(wav_bytes(floats.astype("<f8").tobytes(), encoding=3, bits=64, extensible=True))
    audio = read_wav(tmp_path / "f64.wav", 44100)
    assert audio.samples.tolist() == [0, 16384, -32768, 32767, 0] and audio.source_format == "float 64-bit"


def test_stereo_is_downmixed_and_announced(tmp_path):
    stereo = np.array([[1000, 3000], [-32768, -32768], [5, 6]], dtype=np.int16)
    write_wav(tmp_path / "s.wav", stereo, 44100, bits=24)
    audio = read_wav(tmp_path / "s.wav", 44100)
    assert audio.samples.tolist() == [2000, -32768, 6] and audio.source_channels == 2
    assert any("downmixed 2 channels" in n for n in audio.notes)


@pytest.mark.parametrize("rate", [48000, 16000])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate):
    t = np.arange(rate) / rate
    write_wav(tmp_path / "r.wav", (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), rate)
    audio = read_wav(tmp_path / "r.wav", 44100)
    assert len(audio.samples) == 44100 and audio.source_rate == rate
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio.samples))) * 44100 / len(audio.samples)
    assert abs(peak_hz - 1000) <= 1
    assert any(f"resampled {rate} Hz → 44100 Hz" in n for n in audio.notes)


def test_truncated_data_keeps_whole_frames_and_says_so(tmp_path):
    data = wav_bytes(np.arange(10, dtype="<i2").tobytes())
    (tmp_path / "t.wav").write_bytes(data[:-5])
    audio = read_wav(tmp_path / "t.wav", 44100)
    assert audio.samples.tolist() == list(range(7)) and "truncated" in audio.notes[0]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist"),
        (b"", "empty"),
        (b"ID3\x04" + bytes(100), "not a WAV file"),
        (b"RIFF\x10\x00", "truncated"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no format chunk"),
        (wav_bytes(b"", bits=16), "no audio samples"),
        (wav_bytes(b"\x01\x00\x02\x00", bits=16)[:-3], "no complete sample frame"),
        (wav_bytes(b"\x00" * 8, encoding=6, bits=8), "A-law"),
        (wav_bytes(b"\x00" * 8, bits=12), "12-bit"),
        (wav_bytes(b"\x00" * 8, channels=0), "0 channels"),
        (wav_bytes(b"\x00" * 8, rate=0), "0 Hz"),
        (wav_bytes(np.array([np.nan], dtype="<f4").tobytes(), encoding=3, bits=32), "NaN"),
    ],
)
def test_bad_files_get_one_clear_sentence(tmp_path, content, fragment):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=fragment) as info:
        read_wav(path, 44100)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_a_folder_is_not_audio(tmp_path):
    with pytest.raises(InputError, match="folder"):
        read_wav(tmp_path, 44100)


def test_fit_to_clip_and_sliding_windows():
    x = np.arange(1, 11, dtype=np.int16)
    same, note = fit_to_clip(x, 10)
    assert same is x and note is None
    padded, note = fit_to_clip(x, 12)
    assert padded.tolist() == list(range(1, 11)) + [0, 0] and "padded" in note
    trimmed, note = fit_to_clip(x, 4)
    assert trimmed.tolist() == [1, 2, 3, 4] and "first 4" in note
    windows = sliding_windows(x, 4, 3)
    assert windows.tolist() == [[1, 2, 3, 4], [4, 5, 6, 7], [7, 8, 9, 10]]
    assert sliding_windows(x, 4, 4).tolist()[-1] == [9, 10, 0, 0]
    assert sliding_windows(x[:2], 4, 2).tolist() == [[1, 2, 0, 0]]
