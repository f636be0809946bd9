"""Training, distillation, schedules and checkpoints, on the real synthetic set with the real models."""

import dataclasses
import math
import os
import pickle
import subprocess

import pytest
import torch

from mcuasc.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mcuasc.errors import InputError
from mcuasc.frontend import preset
from mcuasc.models import build_model
from mcuasc.schedules import PlateauDecay, cosine_with_restarts, warmup_cosine
from mcuasc.train import recipe_for, train

from conftest import mcuasc_command


@pytest.fixture
def scenes(synthetic_scenes):
    return synthetic_scenes(20, 0)


@pytest.fixture
def small_scenes(synthetic_scenes):
    return synthetic_scenes(4, 1)


def test_recipes_are_the_seeds():
    s = recipe_for("bcresnet-student")
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size, s.epochs) == ("sgd", 0.008, 0.9, 1e-3, 32, 120)
    assert (s.schedule, s.plateau_factor, s.plateau_patience) == ("plateau", 0.4, 3)
    m = recipe_for("mobilenetv2-ca")
    assert (m.lr, m.weight_decay, m.epochs, m.restart_epochs, m.schedule) == (0.1, 1e-6, 64, (3, 7, 15, 33), "cosine-restarts")
    d = recipe_for("bcresnet-student", distill=True)
    assert (d.lr, d.warmup_epochs, d.schedule) == (0.006, 10, "warmup-cosine")
    # The board recipe (not the seed's) trains on the distillation schedule even with labels only.
    n = recipe_for("bcresnet-nrf52840")
    assert (n.lr, n.warmup_epochs, n.schedule, n.epochs, n.weight_decay) == (0.006, 10, "warmup-cosine", 120, 1e-3)


def test_schedules():
    assert cosine_with_restarts(0, 0.1, 64, (3, 7, 15, 33)) == 0.1
    for restart in (3, 7, 15, 33):
        assert math.isclose(cosine_with_restarts(restart, 0.1, 64, (3, 7, 15, 33)), 0.1)
        assert cosine_with_restarts(restart - 0.01, 0.1, 64, (3, 7, 15, 33)) < 0.001
    assert warmup_cosine(0, 0.006, 120, 10) == 0 and math.isclose(warmup_cosine(5, 0.006, 120, 10), 0.003)
    assert math.isclose(warmup_cosine(10, 0.006, 120, 10), 0.006) and warmup_cosine(120, 0.006, 120, 10) < 1e-12
    plateau = PlateauDecay(0.008, 0.4, 3)
    rates = [plateau.end_epoch(loss) for loss in (3, 2, 2, 2, 2, 1)]
    assert rates == [0.008, 0.008, 0.008, 0.008, pytest.approx(0.0032), pytest.approx(0.0032)]


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    model = build_model("bcresnet-student")
    ckpt = Checkpoint("bcresnet-student", model.state_dict(), preset("bcresnet"), ["a"] * 10, metrics={"acc": 0.5})
    save_checkpoint(ckpt, tmp_path / "s.pt")
    torch.load(tmp_path / "s.pt", weights_only=True)  # loads without any code
    again = load_checkpoint(tmp_path / "s.pt")
    assert again.frontend == preset("bcresnet") and again.metrics == {"acc": 0.5}
    x = torch.randn(2, 1, 256, 44)
    assert torch.equal(again.build_model()(x), model.eval()(x))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_carrying_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mcuasc.checkpoint/1", "payload": _Exploit(marker)}, evil)
    with pytest.raises(InputError, match="needs code to load"):
        load_checkpoint(evil)
    assert not marker.exists()
    with open(tmp_path / "raw.pt", "wb") as f:  # a plain pickle, not even a torch zip
        pickle.dump(_Exploit(marker), f)
    with pytest.raises(InputError):
        load_checkpoint(tmp_path / "raw.pt")
    assert not marker.exists()


def test_bad_checkpoints_get_clear_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a mcuasc checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_student_learns_the_synthetic_scenes(scenes, tmp_path):
    """Eight epochs (~20 s on 2 CPU cores): chance is 10 %; nearest-centroid on mean spectra gets ~30 %."""
    config = dataclasses.replace(recipe_for("bcresnet-student"), epochs=8)
    result = train(scenes, config, tmp_path / "student.pt")
    assert result.best.val_accuracy >= 0.35, result.best
    assert result.history[-1].train_loss < result.history[0].train_loss
    ckpt = load_checkpoint(tmp_path / "student.pt")
    assert ckpt.arch == "bcresnet-student" and ckpt.metrics["epoch"] == result.best_epoch
    assert len(ckpt.metrics["history"]) == result.best_epoch
    assert set(result.best.per_device_accuracy) >= {"s4", "s5", "s6"} & set(result.best.per_device_accuracy)


@pytest.mark.slow
def test_distillation_runs_and_its_kd_loss_falls(small_scenes, tmp_path):
    teacher = dataclasses.replace(recipe_for("bcresnet-teacher"), epochs=1, batch_size=8)
    train(small_scenes, teacher, tmp_path / "teacher.pt")
    student = dataclasses.replace(recipe_for("bcresnet-student", distill=True), epochs=6, warmup_epochs=1, batch_size=8)
    result = train(small_scenes, student, tmp_path / "student.pt", teacher=tmp_path / "teacher.pt")
    kd = [r.kd_loss for r in result.history]
    assert all(k is not None for k in kd) and kd[-1] < kd[0], kd
    assert load_checkpoint(tmp_path / "student.pt").train_config["teacher"] == str(tmp_path / "teacher.pt")


def run(*args, cwd=None):
    return subprocess.run([*mcuasc_command(), *args], capture_output=True, text=True, cwd=cwd)


def test_cli_refuses_bad_training_input(small_scenes, tmp_path):
    for args, fragment in [
        (("train", "--data", str(small_scenes), "--arch", "resnet50"), "unknown architecture"),
        (("train", "--data", str(tmp_path / "none"), "--arch", "bcresnet-student"), "does not exist"),
        (("train", "--data", str(small_scenes), "--arch", "bcresnet-student", "--augment", "wild"), "unknown augmentation"),
        (("train", "--data", str(small_scenes), "--arch", "bcresnet-student", "--lr", "-1"), "learning rate"),
        (("distill", "--teacher", str(tmp_path / "t.pt"), "--data", str(small_scenes)), "does not exist"),
        (("finetune-int8", str(tmp_path / "t.pt"), "--data", str(small_scenes)), "does not exist"),
    ]:
        result = run(*args, "--out", str(tmp_path / "x.pt"))
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    (tmp_path / "keep.pt").write_bytes(b"mine")
    result = run("train", "--data", str(small_scenes), "--arch", "bcresnet-student", "--out", str(tmp_path / "keep.pt"))
    assert result.returncode == 2 and (tmp_path / "keep.pt").read_bytes() == b"mine"


@pytest.mark.slow
def test_cli_train_synth_and_zoo(tmp_path):
    data = tmp_path / "set"
    assert run("synth-data", str(data), "--clips-per-class", "3").returncode == 0
    result = run("train", "--data", str(data), "--arch", "dcase-baseline", "--epochs", "2", "--out", str(tmp_path / "b.pt"))
    assert result.returncode == 0, result.stderr
    assert "best epoch" in result.stdout and (tmp_path / "b.pt").exists()
    zoo = run("zoo", "--json")
    assert zoo.returncode == 0 and "85800" in zoo.stdout.replace(",", "")
