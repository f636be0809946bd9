"""Quantization-aware fine-tuning: the int8 simulation against TFLite's own int8 arithmetic, and the fine-tuning
loop on the real synthetic set."""

import dataclasses

import numpy as np
import pytest
import torch

from mcuasc.checkpoint import load_checkpoint
from mcuasc.errors import InputError
from mcuasc.models import build_model
from mcuasc.models.fake_quant import Int8Simulation, _round_to_grid
from mcuasc.train import quantization_aware_recipe, recipe_for, train


def test_rounding_is_tflites_int8_grid():
    """Per-tensor asymmetric int8 as TFLite defines it: 256 levels, zero exact, clamped outside the range."""
    x = torch.linspace(-3.0, 9.0, 10_001, requires_grad=True)
    low, high = torch.tensor(-2.0), torch.tensor(8.0)
    y = _round_to_grid(x, low, high)
    scale = 10.0 / 255
    zero_point = round(2.0 / scale) - 128
    q = np.round(y.detach().numpy() / scale) + zero_point
    assert np.allclose(q, np.round(q), atol=1e-3) and q.min() == -128 and q.max() == 127
    assert len(np.unique(np.round(q))) == 256
    assert float(_round_to_grid(torch.zeros(1), low, high)) == 0.0
    expected = (np.clip(np.round(x.detach().numpy() / scale) + zero_point, -128, 127) - zero_point) * scale
    assert np.allclose(y.detach().numpy(), expected, atol=1e-6)
    y.sum().backward()  # straight through inside the range, zero where clamped
    inside = (x.detach() > -2.0 + scale) & (x.detach() < 8.0 - scale)
    assert torch.all(x.grad[inside] == 1) and torch.all(x.grad[x.detach() < -2.5] == 0)


def test_simulation_is_off_until_enabled_and_rounds_when_on():
    torch.manual_seed(0)
    model = build_model("bcresnet-student").eval().requires_grad_(False)
    x = torch.randn(4, 1, 256, 44) * 10
    reference = model(x)
    simulation = Int8Simulation(model)
    assert torch.equal(model(x), reference)  # hooks present, nothing calibrated, nothing enabled
    simulation.calibrate(iter([x]))
    assert torch.equal(model(x), reference)
    with simulation.active():
        rounded = model(x)
    assert not torch.equal(rounded, reference)
    relative = float((rounded - reference).norm() / reference.norm())
    assert 1e-4 < relative < 0.5, relative  # int8 noise, not a different function
    # The frequency averages are convolutions of the block input in the int8 graph: rounded on their own range.
    averages = [n for n in simulation.ranges if n.endswith("frequency_average")]
    assert len(averages) == 9
    # Four sub-bands: the frequency conv's output is an int8 tensor of its own, before SubSpectralNorm's MUL.
    assert len([n for n in simulation.ranges if n.endswith("frequency_conv")]) == 9
    simulation.remove()
    modules, outputs = dict(model.named_modules()), {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, (o.amin(), o.amax(), i[0].amin())))
             for n in averages]
    model(x)
    for h in hooks:
        h.remove()
    for name in averages:
        low, high, input_low = outputs[name]
        assert simulation.ranges[name] == (low, high) and input_low < low
    assert torch.equal(model(x), reference)


def test_one_band_subspectral_norm_is_one_rounding_with_its_conv():
    """The nRF52840 recipe: SubSpectralNorm of one band is folded into the frequency conv, so the int8 graph rounds
    after the norm only."""
    model = build_model("bcresnet-nrf52840").eval()
    simulation = Int8Simulation(model)
    simulation.calibrate(iter([torch.randn(2, 1, 64, 32) * 10]))
    assert len([n for n in simulation.ranges if n.endswith("branches.ssn")]) == 9
    assert not [n for n in simulation.ranges if n.endswith("frequency_conv")]


@pytest.mark.slow
def test_fine_tuning_with_int8_simulated(synthetic_scenes, tmp_path):
    scenes = synthetic_scenes(4, 1)
    train(scenes, dataclasses.replace(recipe_for("bcresnet-student"), epochs=1, batch_size=8), tmp_path / "s.pt")
    start = load_checkpoint(tmp_path / "s.pt")
    config = dataclasses.replace(quantization_aware_recipe("bcresnet-student", epochs=2), batch_size=8)
    result = train(scenes, config, tmp_path / "q.pt", init_from=tmp_path / "s.pt")
    assert all(r.val_int8_accuracy is not None and 0 <= r.val_int8_agreement <= 1 for r in result.history)
    tuned = load_checkpoint(tmp_path / "q.pt")
    assert tuned.train_config["quantization_aware"] and tuned.train_config["init_from"] == str(tmp_path / "s.pt")
    # Batch-norms frozen: the statistics the converter folds are the ones the weights were tuned with.
    for key, value in start.state_dict.items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.equal(tuned.state_dict[key], value), key
    assert any(not torch.equal(tuned.state_dict[k], v) for k, v in start.state_dict.items() if k.endswith("weight"))
    with pytest.raises(InputError, match="starts from a trained checkpoint"):
        train(scenes, config, tmp_path / "r.pt")
    with pytest.raises(InputError, match="holds a bcresnet-student model"):
        train(scenes, dataclasses.replace(config, arch="dcase-baseline"), tmp_path / "r.pt", init_from=tmp_path / "s.pt")
