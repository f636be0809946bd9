"""The zoo reproduces the seed's and the challenge's tables exactly, runs, and exports to ONNX."""

import copy

import pytest
import torch

from mcuasc.errors import InputError
from mcuasc.models import ARCHITECTURES, build_model, zoo_report
from mcuasc.models.complexity import count_macs, keras_parameters, layer_costs, trainable_parameters
from mcuasc.models.bcresnet import BroadcastBranches, NormalBlock
from mcuasc.models.export import (BroadcastBranchesExport, NormalBlockExport, bn_scale_shift, correct_weight_rounding_bias,
                                  export_form, int8_weight_grid)
from mcuasc.models.layers import AxisAverage, ResidualNorm, SubSpectralNorm
from mcuasc.models.mobilenetv2 import CoordinateAttention


def rows(name):
    arch = ARCHITECTURES[name]
    model = arch.factory()
    return {r.name: r for r in layer_costs(model, arch.input_shape, model.table_rows(), arch.param_convention)}, model


def test_student_matches_tables_5_6_7():
    table, model = rows("bcresnet-student")
    assert trainable_parameters(model) == 85_800
    expected = {"stem conv 5×5": 2080, "trans1": 5520, "norm1": 2240, "trans2": 7080, "norm2": 4560, "trans3": 12640,
                "norm3": 7680, "trans4": 19800, "norm4": 11600, "norm4b": 11600, "head conv 1×1": 1000}
    assert {k: table[k].params for k in expected} == expected
    # Table 6, the first transition block operator by operator.
    trans1 = model.blocks.trans1
    assert [trainable_parameters(m) for m in (trans1.expand, trans1.expand_bn, trans1.branches.frequency_conv,
            trans1.branches.ssn, trans1.branches.temporal_conv, trans1.branches.temporal_bn,
            trans1.branches.pointwise)] == [3200, 80, 120, 320, 120, 80, 1600]


def test_teacher_matches_the_papers_total():
    _, model = rows("bcresnet-teacher")
    assert trainable_parameters(model) == 314_800


def test_mobilenetv2_matches_table_2_row_by_row():
    table, model = rows("mobilenetv2-ca")
    assert keras_parameters(model) == 110_452
    params = [r.params for r in layer_costs(model, (3, 128, 36), model.table_rows(), "keras")]
    assert params == [896, 128, 5472, 5472, 5472, 6576, 11280, 11280, 12896, 19136, 19136, 4160, 256, 128, 4096, 0,
                      3280, 128, 640, 20, 0]


def test_baseline_matches_keras_and_the_challenge_tools_mac_table():
    table, model = rows("dcase-baseline")
    assert keras_parameters(model) == 46_246
    assert [r.macs for r in table.values()] == [1_599_360, 25_589_760, 32_000, 2_007_040, 2_560, 3_200, 1_000]
    assert sum(count_macs(model, (1, 40, 51)).values()) == 29_234_920


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_forward_shapes_and_feature_shapes_agree(name):
    from mcuasc.frontend import preset

    arch = ARCHITECTURES[name]
    mels, frames, channels = preset(arch.frontend_preset).shape
    assert arch.input_shape == (channels, mels, frames)
    model = build_model(name)
    assert model(torch.randn(3, *arch.input_shape)).shape == (3, 10)
    assert build_model(name, n_classes=4)(torch.randn(2, *arch.input_shape)).shape == (2, 4)


def test_zoo_report_verdicts_and_references():
    report = {m["model"]: m for m in zoo_report()}
    assert report["bcresnet-student"]["dcase_limits"]["within"]
    assert report["mobilenetv2-ca"]["dcase_limits"]["within"]
    assert not report["bcresnet-teacher"]["dcase_limits"]["within"]
    assert report["bcresnet-nrf52840"]["dcase_limits"]["within"] and report["bcresnet-nrf52840"]["reference"]["params"] is None
    for m in (m for m in report.values() if m["reference"]["params"] is not None):  # a few percent of every reference
        assert m["params"] == m["reference"]["params"]
        assert abs(m["macs"] / m["reference"]["macs"] - 1) < 0.07


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(InputError, match="unknown architecture"):
        build_model("resnet50")


def trained_statistics(name):
    """A model whose batch-norms hold non-trivial statistics, as after training."""
    torch.manual_seed(0)
    arch = ARCHITECTURES[name]
    model = build_model(name).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *arch.input_shape) * 5 + 3)
    return model.eval(), arch


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_export_form_computes_the_same_function(name):
    model, arch = trained_statistics(name)
    exported = export_form(model, arch.input_shape)
    x = torch.randn(4, *arch.input_shape) * 5 + 3
    with torch.no_grad():
        assert torch.allclose(model(x), exported(x), atol=1e-4)
    training_only = (torch.nn.BatchNorm2d, SubSpectralNorm, ResidualNorm, CoordinateAttention)
    assert [n for n, m in exported.named_modules() if isinstance(m, training_only)] == []


@pytest.mark.parametrize("name", ["bcresnet-student", "bcresnet-nrf52840"])
def test_bcresnet_frequency_average_is_a_conv_of_the_block_input_with_even_channels(name):
    """The temporal branch's input is computed from the block input (no pool on f2's grid), and with calibration
    data its channels are scaled to fill the average's range: the same function either way."""
    model, arch = trained_statistics(name)
    calibration = torch.randn(16, *arch.input_shape) * 5 + 3
    plain = export_form(model, arch.input_shape)
    even = export_form(model, arch.input_shape, calibration=calibration, weight_bias_correction=False)
    x = torch.randn(4, *arch.input_shape) * 5 + 3
    with torch.no_grad():
        assert torch.allclose(model(x), even(x), atol=1e-4)
    branches = [m for m in even.modules() if isinstance(m, BroadcastBranchesExport)]
    assert len(branches) == len([m for m in model.modules() if isinstance(m, BroadcastBranches)])
    assert not [m for m in even.modules() if isinstance(m, AxisAverage) and m.axis == "frequency"]

    def median_span(graph):
        """Per branch: the median channel's extent over the calibration clips, as a fraction of the tensor's."""
        seen = []
        hooks = [b.frequency_average.register_forward_hook(lambda m, i, o: seen.append(o))
                 for b in graph.modules() if isinstance(b, BroadcastBranchesExport)]
        with torch.no_grad():
            graph(calibration)
        for h in hooks:
            h.remove()
        return torch.tensor([float((o.amax(dim=(0, 2, 3)) - o.amin(dim=(0, 2, 3))).median() / (o.max() - o.min())) for o in seen])

    before, after = median_span(plain), median_span(even)
    assert torch.all(after >= before - 1e-6) and float(after.mean()) > 1.5 * float(before.mean()), (before, after)


def test_int8_weight_grid_is_per_output_channel_symmetric_127():
    weight = torch.tensor([[[[0.5]], [[-0.25]]], [[[0.001]], [[0.003]]]])  # two output channels
    grid = int8_weight_grid(weight)
    assert torch.equal(grid[0].flatten(), torch.tensor([0.5, round(-0.25 / (0.5 / 127)) * (0.5 / 127)]))
    assert float(grid[1].abs().max()) == pytest.approx(0.003)  # each channel's largest weight is exact: ±127 steps
    assert torch.allclose(grid[1].flatten(), torch.tensor([round(0.001 / (0.003 / 127)) * (0.003 / 127), 0.003]))


def test_bias_correction_gives_int8_weights_the_float_means_on_the_calibration_clips():
    """Two convs in a row on inputs far from zero mean: after the correction, each conv with its weights on the int8
    grid has, per output channel, the mean the uncorrected float conv has on the same inputs; before, it did not."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 6, (3, 1), padding=(1, 0), bias=False), torch.nn.ReLU(),
                                torch.nn.Conv2d(6, 6, (1, 3), padding=(0, 1), groups=6)).eval()
    calibration = torch.rand(64, 3, 12, 10) * 4 + 1
    corrected = copy.deepcopy(model)
    correct_weight_rounding_bias(corrected, calibration)
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda m, i: inputs.append(i[0])) for m in model if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(calibration)
    for h in hooks:
        h.remove()
    convs = [(a, b) for a, b in zip(model, corrected) if isinstance(a, torch.nn.Conv2d)]
    assert corrected[2].bias is not None  # a conv without bias gets one
    for (original, fixed), x in zip(convs, inputs):
        with torch.no_grad():
            mean = original(x).mean(dim=(0, 2, 3))
            grid = torch.nn.functional.conv2d(x, int8_weight_grid(original.weight), original.bias, original.stride,
                                              original.padding, original.dilation, original.groups).mean(dim=(0, 2, 3))
            fixed_grid = torch.nn.functional.conv2d(x, int8_weight_grid(fixed.weight), fixed.bias, fixed.stride,
                                                    fixed.padding, fixed.dilation, fixed.groups).mean(dim=(0, 2, 3))
        assert torch.equal(int8_weight_grid(fixed.weight), int8_weight_grid(original.weight))
        assert float((grid - mean).abs().max()) > 1e-4
        assert float((fixed_grid - mean).abs().max()) < 1e-5


@pytest.mark.parametrize("name", ["bcresnet-student", "bcresnet-nrf52840"])
def test_export_with_bias_correction_moves_the_logits_a_little_towards_int8_weights(name):
    model, arch = trained_statistics(name)
    calibration = torch.randn(32, *arch.input_shape) * 5 + 3
    plain = export_form(model, arch.input_shape, calibration=calibration, weight_bias_correction=False)
    corrected = export_form(model, arch.input_shape, calibration=calibration)
    x = torch.randn(8, *arch.input_shape) * 5 + 3
    with torch.no_grad():
        reference, moved = model(x), corrected(x)
        shift = float((moved - reference).abs().max() / reference.abs().max())
        assert 0 < shift < 0.05

        def int8_weight_error(graph):
            rounded = copy.deepcopy(graph)
            for conv in [m for m in rounded.modules() if isinstance(m, torch.nn.Conv2d)]:
                conv.weight.data = int8_weight_grid(conv.weight)
            return float(((rounded(calibration) - plain(calibration)) ** 2).mean())

        assert int8_weight_error(corrected) < int8_weight_error(plain)


def test_nrf52840_recipe_stem_and_expand_export_as_one_conv():
    """No norm between them: the 2c-channel stem output is never formed."""
    model, arch = trained_statistics("bcresnet-nrf52840")
    exported = export_form(model, arch.input_shape)
    first = next(iter(exported.blocks.children()))
    assert isinstance(first.expand, torch.nn.Identity)
    assert (exported.stem.in_channels, exported.stem.out_channels) == (1, model.blocks.trans1.expand.out_channels)
    assert exported.stem.kernel_size == model.stem.kernel_size and exported.stem.stride == model.stem.stride


def test_nrf52840_recipe_normal_blocks_carry_their_identity_in_the_frequency_conv():
    """One band: SubSpectralNorm is a batch-norm folded into the frequency conv, and x + f2 is that conv with its
    centre tap + 1 (one ADD per normal block left, the temporal branch's). The student's four bands keep the
    identity ADD: the per-band MUL and ADD stand between the conv and the sum."""
    model, arch = trained_statistics("bcresnet-nrf52840")
    exported = export_form(model, arch.input_shape)
    blocks = dict(exported.blocks.named_children())
    normal = [n for n, b in model.blocks.named_children() if isinstance(b, NormalBlock)]
    assert len(normal) == 5 and all(isinstance(blocks[n], NormalBlockExport) for n in normal)
    for name in normal:
        original, branches = getattr(model.blocks, name).branches, blocks[name].branches
        scale, _ = bn_scale_shift(original.ssn.bn)
        expected = original.frequency_conv.weight * scale.view(-1, 1, 1, 1)
        expected[:, 0, 1, 0] += 1.0
        assert torch.allclose(branches.frequency_conv.weight, expected, atol=1e-6)
    x = torch.randn(4, *arch.input_shape) * 5 + 3
    with torch.no_grad():
        assert torch.allclose(model(x), exported(x), atol=1e-4)
    student, student_arch = trained_statistics("bcresnet-student")
    assert not [m for m in export_form(student, student_arch.input_shape).modules() if isinstance(m, NormalBlockExport)]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_model_exports_to_a_clean_onnx_graph(name, tmp_path):
    from mcuasc.convert.onnx_export import export_onnx

    model, arch = trained_statistics(name)
    graph = export_onnx(model, arch.input_shape, tmp_path / "model.onnx")
    ops = [node.op_type for node in graph.graph.node]
    assert "Conv" in ops
    # No batch-norm, no layout ops, no ReduceMean (MEAN has no CMSIS-NN kernel), no Constant nodes.
    assert not {"BatchNormalization", "Transpose", "Reshape", "Gather", "ReduceMean", "Constant", "Slice"} & set(ops)
