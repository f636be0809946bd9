"""The command line, run as users run it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from mcuasc.audio import write_wav
from mcuasc.frontend import IntegerFrontend, preset
from mcuasc.testsignals import realistic_corpus

from conftest import mcuasc_command

COMMANDS = ["features", "presets", "boards", "demo", "synth-data", "zoo", "train", "distill", "finetune-int8", "convert",
            "simulate", "gen-firmware", "emulate"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*mcuasc_command(), *args], capture_output=True, text=True, cwd=cwd)


def assert_clear_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit 2, one sentence naming the problem, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in " ".join(result.stderr.split()), result.stderr
    assert result.stderr.strip().startswith("error:")


@pytest.fixture
def clip(tmp_path):
    cfg = preset("bcresnet")
    pcm = next(iter(realistic_corpus(cfg.clip_samples, cfg.sample_rate, seed=9, count=1).values()))
    path = tmp_path / "scene.wav"
    write_wav(path, pcm, cfg.sample_rate, bits=24)
    return path


def test_every_command_has_help():
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
        sub = run(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout, sub.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("mcuasc ")


@pytest.mark.parametrize("impl", ["integer", "c", "float"])
def test_features_saves_what_the_library_computes(clip, tmp_path, impl):
    out = tmp_path / f"f_{impl}.npy"
    result = run("features", str(clip), "--impl", impl, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "(256, 44, 1)" in result.stdout
    saved = np.load(out)
    assert saved.shape == (256, 44, 1)
    assert saved.dtype == (np.float32 if impl == "float" else np.int8)
    if impl != "float":
        from mcuasc.audio import read_wav

        expected = IntegerFrontend(preset("bcresnet"))(read_wav(clip, 44100).samples)
        assert np.array_equal(saved, expected)


def test_features_preset_json_and_default_output(clip, tmp_path):
    result = run("features", str(clip), "--preset", "mobilenetv2", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["shape"] == [128, 36, 3] and len(summary["channels"]) == 3
    assert np.load(tmp_path / summary["out"]).shape == (128, 36, 3)


def test_features_with_a_config_file(clip, tmp_path):
    config = tmp_path / "fe.json"
    config.write_text(preset("dcase-baseline").to_json())
    out = tmp_path / "b.npy"
    result = run("features", str(clip), "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (40, 51, 1)


def test_resampling_and_padding_are_announced(tmp_path):
    pcm = (np.sin(np.arange(24000) * 0.05) * 8000).astype(np.int16)  # 0.5 s at 48 kHz
    path = tmp_path / "short48k.wav"
    write_wav(path, pcm, 48000)
    result = run("features", str(path), "--out", str(tmp_path / "x.npy"))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "48000" in text and "44100" in text and "padded" in text


def test_existing_output_is_not_overwritten(clip, tmp_path):
    out = tmp_path / "mine.npy"
    out.write_bytes(b"precious")
    assert_clear_error(run("features", str(clip), "--out", str(out)), "--force")
    assert out.read_bytes() == b"precious"
    assert run("features", str(clip), "--out", str(out), "--force").returncode == 0
    assert np.load(out).shape == (256, 44, 1)


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("missing.wav", None, "does not exist"),
        ("empty.wav", b"", "empty"),
        ("song.wav", b"ID3\x03\x00" + bytes(200), "not a WAV"),
        ("cut.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "truncated"),
    ],
)
def test_bad_audio_gets_a_clear_error(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert_clear_error(run("features", str(path), "--out", str(tmp_path / "o.npy")), fragment)
    assert not (tmp_path / "o.npy").exists()


def test_bad_options_get_clear_errors(clip, tmp_path):
    assert_clear_error(run("features", str(clip), "--preset", "resnet"), "unknown front-end preset")
    assert_clear_error(run("features", str(clip), "--impl", "fpga"), "unknown implementation")
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_fft": 1000}')
    assert_clear_error(run("features", str(clip), "--config", str(bad)), "power of two")
    assert_clear_error(run("features", str(clip), "--preset", "bcresnet", "--config", str(bad)), "not both")
    assert_clear_error(run("features", str(clip), "--out", str(tmp_path / "x.txt")), ".npy")
    assert_clear_error(run("features", str(clip), "--out", str(tmp_path / "nowhere" / "x.npy")), "does not exist")


def test_presets_and_boards_list():
    presets = run("presets")
    assert presets.returncode == 0 and "256×44×1" in presets.stdout and "128×36×3" in presets.stdout
    as_json = json.loads(run("presets", "--json").stdout)
    assert as_json["dcase-baseline"]["n_mels"] == 40
    boards = run("boards")
    assert boards.returncode == 0 and "nrf52840" in boards.stdout and "mps2-an386" in boards.stdout


@pytest.mark.slow
def test_demo_runs_and_proves_bit_exactness(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("bit-exact") >= 3
    assert (out / "street_scene.wav").exists() and (out / "features.bcresnet.npy").exists()
    assert (out / "student.pt").exists() and (out / "scenes" / "meta.csv").exists()
    from mcuasc.checkpoint import load_checkpoint

    assert load_checkpoint(out / "student.pt").train_config["teacher"] == str(out / "teacher.pt")
    from mcuasc.convert import find_manifest, load_manifest

    manifest = load_manifest(find_manifest(out))
    assert (out / manifest.files["tflite"]).exists() and "stage 2: convert" in result.stdout
    assert "stage 5: simulate" in result.stdout


def test_demo_reuses_its_own_folder_and_refuses_a_strangers(tmp_path):
    from mcuasc.demo import MARKER, prepare_out_dir

    mine = tmp_path / "demo"
    prepare_out_dir(mine)
    (mine / "old.npy").write_bytes(b"x")
    prepare_out_dir(mine)  # an earlier demo's folder: fine
    assert (mine / MARKER).exists()
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep")
    assert_clear_error(run("demo", "--out", str(stranger)), "not made by mcuasc demo")
    assert (stranger / "notes.txt").read_text() == "keep"
