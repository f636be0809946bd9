"""simulate: real front ends (numpy, and the C compiled with gcc), real TFLite reference kernels and TFLM runtime,
on a converted student; bit-exact everywhere, and a perturbed engine is caught and localised."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import mcuasc_command, require_tool
from mcuasc.audio import write_wav
from mcuasc.convert import analysis
from mcuasc.data.cache import load_pcm
from mcuasc.data.tau import TauDataset
from mcuasc.frontend import IntegerFrontend
from mcuasc.frontend.c_source import write_frontend
from mcuasc.simulate import SimulateOptions, Simulator, load_deployment, resolve_clips, simulate_many, summarize
from mcuasc.simulate.simulator import window_starts
from mcuasc.testsignals import hostile_corpus

pytestmark = pytest.mark.slow  # every test here needs the converted student


@pytest.fixture(scope="module")
def simulator(deployment):
    require_tool("gcc", "gcc")
    return Simulator(deployment)


@pytest.fixture(scope="module")
def hostile_wavs(tmp_path_factory):
    """The hostile corpus as the WAVs users have: 44.1 kHz 16-bit, and 24-bit, float, stereo, 48 kHz, 16 kHz,
    short and long files."""
    folder = tmp_path_factory.mktemp("hostile")
    rate = 44100
    corpus = hostile_corpus(rate, rate, seed=3)
    for name, pcm in corpus.items():
        write_wav(folder / f"{name}.wav", pcm, rate)
    pink, chirp = corpus["pink_full_scale"], corpus["chirp_full_scale"]
    write_wav(folder / "pink_24bit.wav", pink, rate, bits=24)
    write_wav(folder / "chirp_float.wav", chirp, rate, float_format=True)
    write_wav(folder / "stereo.wav", np.stack([pink, corpus["square_full_scale"]], axis=1), rate)
    rng = np.random.default_rng(5)
    write_wav(folder / "noise_48k.wav", (rng.standard_normal(48000) * 3000).astype(np.int16), 48000)
    write_wav(folder / "noise_16k_stereo.wav", (rng.standard_normal((16000, 2)) * 3000).astype(np.int16), 16000)
    write_wav(folder / "short_0.4s.wav", pink[: int(0.4 * rate)], rate)
    write_wav(folder / "long_3.3s.wav", np.tile(chirp, 4)[: int(3.3 * rate)], rate)
    return folder


def assert_interpreters_agree(results):
    """TFLite-ref == TFLM on every window. (TFLite derives a MUL's multiplier in float32, TFLM in double; convert
    aligns every MUL's output scale so both derive the same one, see mcuasc.convert.finalize.)"""
    unexplained = [(r.source.path.name, w.operator_divergence) for r in results for w in r.windows if not w.logits_bit_exact]
    assert unexplained == []


def test_the_synthetic_evaluation_split_is_bit_exact(deployment, converted_student, student_scenes):
    split = student_scenes / "evaluation_setup" / "fold1_evaluate.csv"
    sources = resolve_clips([split], deployment.labels)
    results = simulate_many(deployment, sources, jobs=2, batch=4)
    assert [r.source.path for r in results] == [s.path for s in sources]  # input order survives the workers
    assert all(r.bit_exact for r in results)
    # The logits are the reference interpreter's on the integer front end's features, computed here directly.
    m = deployment.manifest
    clips = TauDataset.open(student_scenes).split("evaluate")
    features = IntegerFrontend(m.frontend)(load_pcm(clips, m.frontend))
    reference = analysis.reference_interpreter(deployment.flatbuffer)
    for result, x in zip(results, features):
        assert np.array_equal(result.windows[0].logits_reference, analysis.invoke(reference, x))
    # Labels and devices come from the split; the summary's accuracy matches the manifest's int8 accuracy.
    overall, *per_device = summarize(results)
    assert overall.clips == overall.bit_exact == overall.labelled == len(clips)
    assert {row.group for row in per_device} == {f"device {c.device}" for c in clips}
    assert overall.accuracy == pytest.approx(m.fidelity["int8_accuracy"])


def test_the_hostile_corpus_is_bit_exact(simulator, hostile_wavs):
    sources = resolve_clips([hostile_wavs], simulator.deployment.labels)
    assert len(sources) == len(hostile_corpus(44100, 44100)) + 7
    results = simulator.simulate_batch(sources)
    by_name = {r.source.path.name: r for r in results}
    assert all(r.error is None for r in results)
    # The front ends agree everywhere.
    assert [name for name, r in by_name.items() if not r.features_bit_exact] == []
    assert_interpreters_agree(results)
    assert any("resampled 48000 Hz → 44100 Hz" in n for n in by_name["noise_48k.wav"].notes)
    assert any("resampled 16000 Hz" in n for n in by_name["noise_16k_stereo.wav"].notes)
    assert any("downmixed 2 channels" in n for n in by_name["stereo.wav"].notes)
    assert any("padded" in n for n in by_name["short_0.4s.wav"].notes)
    long = by_name["long_3.3s.wav"]
    assert [w.start_seconds for w in long.windows] == pytest.approx([0, 1, 2, 3.3 - 1], abs=1e-4)
    # The clip-level decision is the mean of the windows' log-probabilities.
    assert np.allclose(long.log_probabilities, long.window_log_probabilities().mean(axis=0))
    # Not vacuous: these clips drive the model's input across the int8 range.
    features = np.stack([IntegerFrontend(simulator.cfg)(r) for r in hostile_corpus(44100, 44100, seed=3).values()])
    assert features.min() == -128 and features.max() == 127


def test_windows_cover_long_audio_without_invented_silence():
    assert window_starts(44100, 44100, 44100) == [0]
    assert window_starts(3 * 44100, 44100, 44100) == [0, 44100, 88200]
    assert window_starts(100_000, 44100, 22050) == [0, 22050, 44100, 55900]
    assert window_starts(100, 44100, 44100) == [0]


def test_a_hop_gives_overlapping_windows(deployment, hostile_wavs):
    simulator = Simulator(deployment, SimulateOptions(hop_seconds=0.5))
    result = simulator.simulate(resolve_clips([hostile_wavs / "long_3.3s.wav"], deployment.labels)[0])
    assert [w.start_seconds for w in result.windows] == pytest.approx([0, 0.5, 1, 1.5, 2, 2.3], abs=1e-4)
    assert result.features_bit_exact
    assert_interpreters_agree([result])


def _conv_weights(flatbuffer: bytes, interpreter) -> tuple[int, bytes, int]:
    """(operator position, weight bytes, weight tensor index) of the first CONV_2D whose weights occur once."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    for position, op in enumerate(interpreter._get_ops_details()):
        if op["op_name"] == "CONV_2D":
            weights = interpreter.get_tensor(op["inputs"][1])
            raw = weights.tobytes()
            if flatbuffer.count(raw) == 1:
                return position, raw, tensors[op["inputs"][1]]["index"]
    raise AssertionError("no CONV_2D with unique weight bytes")


def test_a_perturbed_tflm_model_is_caught_and_the_operator_named(deployment, hostile_wavs):
    """Negate one convolution's weights in the model only the TFLM engine runs: the logits must differ and the
    localisation must name that convolution, its output tensor, and how much it differs."""
    flatbuffer = deployment.flatbuffer
    reference = analysis.reference_interpreter(flatbuffer)
    position, raw, _ = _conv_weights(flatbuffer, reference)
    negated = (-np.frombuffer(raw, dtype=np.int8).astype(np.int16)).clip(-127, 127).astype(np.int8).tobytes()
    perturbed = flatbuffer.replace(raw, negated)
    op = reference._get_ops_details()[position]
    expected_tensor = {t["index"]: t["name"] for t in reference.get_tensor_details()}[op["outputs"][0]]

    simulator = Simulator(deployment, tflm_flatbuffer=perturbed)
    result = simulator.simulate(resolve_clips([hostile_wavs / "pink_full_scale.wav"], deployment.labels)[0])
    window = result.windows[0]
    assert window.features_bit_exact and not window.logits_bit_exact and not result.bit_exact
    divergence = window.operator_divergence
    assert divergence is not None
    assert (divergence.operator_index, divergence.op, divergence.tensor) == (position, "CONV_2D", expected_tensor)
    assert 0 < divergence.differing <= divergence.total and divergence.max_abs_difference > 0
    assert f"#{position} CONV_2D" in divergence.describe()
    # The unperturbed engines, asked the same question, find nothing.
    pink = IntegerFrontend(deployment.manifest.frontend)(hostile_corpus(44100, 44100, seed=3)["pink_full_scale"])
    assert Simulator(deployment).comparer.first_divergence(pink) is None


def _perturbed_firmware(deployment, folder, band: int = 100):
    """The front end as gen-firmware writes it, with one mel band's gain raised by 0.03 dB in the table."""
    write_frontend(deployment.manifest.frontend, folder / "src" / "frontend")
    tables = folder / "src" / "frontend" / "mcuasc_frontend_tables.c"
    text = tables.read_text()
    marker = "mcuasc_mel_log2_gain_q16[256] = {\n"
    head, tail = text.split(marker)
    values, rest = tail.split("};", 1)
    gains = [int(v) for v in values.replace(",", " ").split()]
    gains[band] += 700
    tables.write_text(head + marker + ", ".join(map(str, gains)) + "\n};" + rest)


def test_a_perturbed_c_front_end_is_caught_at_its_band(deployed, deployment, hostile_wavs, tmp_path):
    firmware = tmp_path / "firmware"
    _perturbed_firmware(deployment, firmware, band=100)
    perturbed = load_deployment(directory=deployed, firmware=firmware)
    assert perturbed.frontend_origin == f"firmware {firmware}"
    result = Simulator(perturbed).simulate(resolve_clips([hostile_wavs / "white_full_scale.wav"], deployment.labels)[0])
    divergence = result.windows[0].feature_divergence
    assert not result.features_bit_exact and divergence is not None
    # Only band 100 can differ: it is the first differing value, and there are at most one per frame.
    assert divergence.band == 100 and 0 < divergence.differing <= deployment.manifest.frontend.shape[1]
    assert divergence.c_value > divergence.numpy_value  # the raised gain


def _run(*args, cwd):
    return subprocess.run([*mcuasc_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_one_clip_finds_the_manifest_and_says_bit_exact(deployed, hostile_wavs):
    done = _run("simulate", hostile_wavs / "pink_24bit.wav", cwd=deployed)
    assert done.returncode == 0, done.stderr
    assert "BIT-EXACT" in done.stdout and "Traceback" not in done.stderr
    assert "probability" in done.stdout


def test_cli_json_and_csv_for_many_clips(deployed, hostile_wavs, tmp_path):
    table = tmp_path / "results.csv"
    done = _run("simulate", f"{hostile_wavs}/*_full_scale.wav", hostile_wavs / "long_3.3s.wav", "--json", "--csv", table,
                "--jobs", "2", cwd=deployed)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 7 + 1
    assert done.returncode == 0, done.stderr
    for record in lines:
        assert record["bit_exact"]["features"]
        assert record["bit_exact"]["logits"] == (record["int8_logits"]["tflite_ref"] == record["int8_logits"]["tflm"])
        for window in record["windows"]:
            assert window["bit_exact"]["logits"], window["operator_divergence"]
        assert record["predicted"] == record["top"][0]["label"]
        assert set(record["timings_s"]) >= {"frontend_numpy", "frontend_c", "tflite_ref", "tflm"}
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 7 + 4  # the long file gives four windows
    assert all(r["features_bit_exact"] == "1" for r in rows)
    assert sum(r["logits_bit_exact"] == "1" for r in rows) == sum(w["bit_exact"]["logits"] for l in lines for w in l["windows"])
    # An existing CSV is not replaced without --force.
    again = _run("simulate", hostile_wavs / "silence.wav", "--csv", table, cwd=deployed)
    assert again.returncode == 2 and "already exists" in again.stderr and len(list(csv.DictReader(table.open()))) == 11


def test_cli_mismatch_exits_1_and_names_the_first_differing_feature(deployed, deployment, hostile_wavs, tmp_path):
    _perturbed_firmware(deployment, tmp_path / "fw", band=100)
    done = _run("simulate", hostile_wavs / "white_full_scale.wav", "--firmware", tmp_path / "fw", cwd=deployed)
    assert done.returncode == 1
    assert "MISMATCH" in done.stdout and ", band 100, channel 0" in " ".join(done.stdout.split())


def _assert_clear_error(done, fragment):
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_cli_bad_input(deployed, deployment, hostile_wavs, tmp_path):
    _assert_clear_error(_run("simulate", "missing.wav", cwd=deployed), "does not exist")
    _assert_clear_error(_run("simulate", hostile_wavs / "silence.wav", cwd=tmp_path), "no *.manifest.json")
    _assert_clear_error(_run("simulate", "nothing*.wav", cwd=deployed), "matches no files")
    _assert_clear_error(_run("simulate", hostile_wavs / "silence.wav", "--hop", "0", cwd=deployed), "--hop")
    # A flatbuffer that is not the manifest's model is refused.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(deployment.manifest_path, other)
    (other / deployment.model_path.name).write_bytes(deployment.flatbuffer[:-8] + b"\0" * 8)
    _assert_clear_error(_run("simulate", hostile_wavs / "silence.wav", cwd=other), "sha256 differs")
    # A firmware front end rendered for another config is refused before anything runs.
    import dataclasses

    from mcuasc.frontend import preset

    write_frontend(dataclasses.replace(preset("bcresnet"), n_mels=128), tmp_path / "fw")
    _assert_clear_error(_run("simulate", hostile_wavs / "silence.wav", "--firmware", tmp_path / "fw", cwd=deployed),
                        "rendered for another config")
    # An unreadable clip among good ones: the good ones are simulated, the bad one named, exit 2.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(hostile_wavs / "silence.wav", mixed)
    (mixed / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    done = _run("simulate", mixed, cwd=deployed)
    _assert_clear_error(done, "broken.wav")
    assert "1 / 1" in done.stdout
