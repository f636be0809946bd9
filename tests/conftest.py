"""Shared test helpers. In CI (CI=true) a missing tool fails the test: CI must not skip whole areas."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(tool: str, apt_package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install {apt_package})"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run must install it")
        pytest.skip(message)
    return path


def mcuasc_command() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).parent / "mcuasc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcuasc.cli"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Compile C into a per-session cache, never the user's."""
    monkeypatch.setenv("MCUASC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mcuasc-cache"))


@pytest.fixture(scope="session")
def synthetic_scenes(tmp_path_factory):
    """Factory of synthetic TAU-layout sets, each (clips per class, seed) written once per test session."""
    from mcuasc.data.synth import synthesize_dataset

    made = {}

    def make(clips_per_class: int, seed: int) -> Path:
        if (clips_per_class, seed) not in made:
            root = tmp_path_factory.mktemp(f"scenes-{clips_per_class}-{seed}")
            synthesize_dataset(root, clips_per_class=clips_per_class, seed=seed)
            made[clips_per_class, seed] = root
        return made[clips_per_class, seed]

    return make


@pytest.fixture(scope="session")
def student_scenes(synthetic_scenes):
    """The small synthetic set the converted student is trained, calibrated and validated on."""
    return synthetic_scenes(6, 11)


@pytest.fixture(scope="session")
def trained_student(student_scenes, tmp_path_factory):
    """The BC-ResNet student after two epochs (real batch-norm statistics), once per test session."""
    import dataclasses

    from mcuasc.train import recipe_for, train

    out = tmp_path_factory.mktemp("ckpt") / "student.pt"
    train(student_scenes, dataclasses.replace(recipe_for("bcresnet-student"), epochs=2), out)
    return out


@pytest.fixture(scope="session")
def converted_student(trained_student, student_scenes, tmp_path_factory):
    """That student through the real convert chain (ONNX → onnx2tf → int8 TFLite + manifest)."""
    from mcuasc.convert import convert

    return convert(trained_student, tmp_path_factory.mktemp("converted"), data=student_scenes)


@pytest.fixture(scope="session")
def deployed(converted_student, tmp_path_factory):
    """A folder as a user has it after `mcuasc convert`: the manifest and the int8 flatbuffer, nothing else."""
    import shutil

    folder = tmp_path_factory.mktemp("deployed")
    shutil.copy(converted_student.out_dir / converted_student.manifest.files["tflite"], folder)
    shutil.copy(converted_student.manifest_path, folder)
    return folder


@pytest.fixture(scope="session")
def deployment(deployed):
    """What simulate and gen-firmware resolve in that folder."""
    from mcuasc.simulate import load_deployment

    return load_deployment(directory=deployed)
