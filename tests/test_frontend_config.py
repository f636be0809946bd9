import json

import pytest

from mcuasc.errors import InputError
from mcuasc.frontend import PRESETS, FrontendConfig, preset


@pytest.mark.parametrize(
    "name, shape",
    [
        ("bcresnet", (256, 44, 1)),  # seed Table 1: 256 × 44 × 1
        ("mobilenetv2", (128, 36, 3)),  # seed Table 2: 128 × 36 × 3
        ("dcase-baseline", (40, 51, 1)),  # DCASE2022 baseline: 40 × 51
    ],
)
def test_presets_give_the_papers_shapes(name, shape):
    assert preset(name).shape == shape


def test_preset_fields_follow_the_specs():
    b = preset("bcresnet")
    assert (b.sample_rate, b.n_fft, b.win_length, b.hop_length, b.window) == (44100, 2048, 2048, 1024, "hamming")
    base = preset("dcase-baseline")
    assert (base.win_length, base.hop_length, base.n_mels, base.power, base.mel_scale) == (1764, 882, 40, 1, "slaney")


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name):
    cfg = PRESETS[name]
    again = FrontendConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())


def test_with_quantization_records_its_source():
    cfg = preset("bcresnet").with_quantization(0.5, -3, "model student_int8.tflite")
    assert (cfg.output_scale, cfg.output_zero_point, cfg.quantization_source) == (0.5, -3, "model student_int8.tflite")
    assert FrontendConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n_fft": 1000}, "power of two"),
        ({"win_length": 4096}, "win_length"),
        ({"n_mels": 2000}, "n_mels"),
        ({"fmax": 30000.0}, "fmax"),
        ({"power": 3}, "power"),
        ({"output_zero_point": 300}, "zero_point"),
        ({"window": "kaiser"}, "window"),
        ({"delta_width": 4, "deltas": True}, "delta_width"),
        ({"clip_seconds": 0.01, "deltas": True}, "too few"),
    ],
)
def test_invalid_configs_are_refused_with_a_reason(change, message):
    data = {**preset("bcresnet").to_dict(), **change}
    with pytest.raises(InputError, match=message):
        FrontendConfig.from_dict(data)


def test_unknown_keys_and_wrong_types_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown keys"):
        FrontendConfig.from_dict({**preset("bcresnet").to_dict(), "n_melz": 3})
    with pytest.raises(InputError, match="must be int"):
        FrontendConfig.from_dict({**preset("bcresnet").to_dict(), "n_mels": "256"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        FrontendConfig.load(bad)
    with pytest.raises(InputError, match="does not exist"):
        FrontendConfig.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="unknown front-end preset"):
        preset("resnet")
