"""The benchmark and example scripts behind the README still run (tiny sizes; speed is not asserted)."""

import re
import subprocess
import sys

import pytest

from conftest import REPO, require_tool


@pytest.mark.parametrize(
    "script, args",
    [
        ("frontend_precision.py", ["--clips", "3"]),
        ("frontend_speed.py", ["--clips", "4", "--repeats", "1", "--presets", "mobilenetv2"]),
        ("frontend_size.py", []),
        ("frontend_cortex_m.py", ["--clips", "1", "--presets", "dcase-baseline"]),
        pytest.param("convert.py", ["--models", "dcase-baseline", "--clips-per-class", "2", "--activations", "int8", "int16"],
                     marks=pytest.mark.slow),
        pytest.param("simulate.py", ["--clips-per-class", "2", "--repeats", "1"], marks=pytest.mark.slow),
        pytest.param("board_recipe.py", ["--clips-per-class", "2", "--epochs", "1"], marks=pytest.mark.slow),
        pytest.param("reference_vs_tflm_ops.py", [], marks=pytest.mark.slow),
        pytest.param("fidelity_budget.py", ["--models", "bcresnet-nrf52840", "--clips-per-class", "2", "--epochs", "1",
                                            "--finetune-epochs", "1", "--schedule", "distillation", "--held-out-clips-per-class", "3"],
                     marks=pytest.mark.slow),
    ],
)
def test_benchmark_script_runs(script, args, tmp_path):
    if script in ("frontend_size.py", "frontend_cortex_m.py"):
        require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    if script == "frontend_cortex_m.py":
        require_tool("qemu-system-arm", "qemu-system-arm")
    if script == "frontend_speed.py":
        pytest.importorskip("librosa")
    if script == "fidelity_budget.py":
        args = [*args, "--keep", str(tmp_path / "work")]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\|[ :]*---", result.stdout, re.M), result.stdout  # prints a Markdown table
    if script != "simulate.py":  # its speed goal depends on the machine's load; tests assert correctness, not speed
        assert "FAIL" not in result.stdout
    if script == "fidelity_budget.py":  # the TFLM runtime computes what the reference kernels do, on every clip
        tflm_cells = re.findall(r"^\|[^\n]*\| (int8 model|int16 activations \([^|]*\)) \|[^\n]*\| (\d+) of (\d+) \|$",
                                result.stdout, re.M)
        assert [row.split(" (")[0] for row, _, _ in tflm_cells] == ["int8 model", "int16 activations"], result.stdout
        assert all(same == total for _, same, total in tflm_cells), result.stdout
        assert all(total == "30" for _, _, total in tflm_cells), result.stdout  # the held-out set: 3 clips × 10 scenes
        kept = tmp_path / "work" / "bcresnet-nrf52840"
        assert (kept / "bcresnet-nrf52840.manifest.json").is_file() and (kept / "bcresnet-nrf52840_int8.tflite").is_file()
        again = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True)
        assert again.returncode == 2 and "already exists" in again.stderr  # what was kept is never overwritten
        assert (kept / "bcresnet-nrf52840.manifest.json").is_file()


def test_example_runs():
    result = subprocess.run([sys.executable, str(REPO / "examples" / "frontend_from_python.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "numpy == C: True" in result.stdout
