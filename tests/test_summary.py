"""Tests of cyconv.summary: the layer table, checked against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

import cyconv
from cyconv import nn, teach
from cyconv.models import DigitsNet, LeNet5, ResNetSmall, VGGSmall
from cyconv.summary import LayerRow, Summary, summary, summary_text


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


# name, type, output shape (no batch), params, receptive field, jump, FLOPs
LENET5_ROWS = [
    ("features.0", "Conv2d", (6, 28, 28), 156, 5, 1, 2 * 1 * 25 * 6 * 28 * 28),
    ("features.1", "ReLU", (6, 28, 28), 0, 5, 1, 0),
    ("features.2", "MaxPool2d", (6, 14, 14), 0, 6, 2, 0),
    # 5 + (2-1)*1 + (5-1)*2 = 14
    ("features.3", "Conv2d", (16, 10, 10), 2416, 14, 2, 2 * 6 * 25 * 16 * 10 * 10),
    ("features.4", "ReLU", (16, 10, 10), 0, 14, 2, 0),
    ("features.5", "MaxPool2d", (16, 5, 5), 0, 16, 4, 0),
    ("classifier.0", "Linear", (120,), 48120, None, None, 2 * 400 * 120),
    ("classifier.1", "ReLU", (120,), 0, None, None, 0),
    ("classifier.2", "Linear", (84,), 10164, None, None, 2 * 120 * 84),
    ("classifier.3", "ReLU", (84,), 0, None, None, 0),
    ("classifier.4", "Linear", (10,), 850, None, None, 2 * 84 * 10),
]


def test_lenet5_rows_match_the_hand_check():
    result = summary(LeNet5(), (1, 32, 32))
    assert isinstance(result, Summary)
    assert len(result.rows) == len(LENET5_ROWS)
    for row, (name, kind, shape, params, rf, jump, flops) in zip(result.rows, LENET5_ROWS):
        assert isinstance(row, LayerRow)
        assert (row.name, row.type) == (name, kind)
        assert row.output_shape == (1,) + shape, name
        assert row.params == params, name
        assert row.receptive_field == (None if rf is None else (rf, rf)), name
        assert row.jump == (None if jump is None else (jump, jump)), name
        assert row.flops == flops, name
    assert result.total_params == result.trainable_params == 61_706 == _numel(LeNet5())
    assert result.non_trainable_params == 0
    assert result.total_flops == sum(row[-1] for row in LENET5_ROWS) == 833_040
    assert result.row("features.3").input_shape == (1, 6, 14, 14)


def test_lenet5_table_text():
    text = str(summary(LeNet5(), (1, 32, 32)))
    assert text.startswith("LeNet5: input (1, 32, 32), batch size 1, float32")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    assert header.split() == ["Layer", "Type", "Output", "shape", "Params", "RF", "Jump", "FLOPs"]
    conv2 = next(line for line in lines if line.startswith("features.3"))
    assert conv2.split() == ["features.3", "Conv2d", "[1,", "16,", "10,", "10]", "2,416", "14", "2",
                             "480,000"]
    fc1 = next(line for line in lines if line.startswith("classifier.0"))
    assert fc1.split()[-4:] == ["48,120", "-", "-", "96,000"]
    assert "Total params: 61,706" in lines
    assert "Trainable params: 61,706" in lines
    assert "Non-trainable params: 0" in lines
    assert "Total FLOPs (forward pass, batch of 1): 833,040" in lines
    # Columns are aligned: every table row is as long as or shorter than the rules.
    rule = next(line for line in lines if set(line) == {"="})
    assert all(len(line) <= len(rule) for line in lines[1:lines.index("Total params: 61,706")])
    assert summary_text(LeNet5(), (1, 32, 32)) == text


def test_summary_uses_the_calculators():
    result = summary(LeNet5(input_size=28), (1, 28, 28))
    conv1 = result.row("features.0")
    assert conv1.output_shape[2:] == teach.conv_output_shape((28, 28), 5, padding=2) == (28, 28)
    assert conv1.params == teach.conv_params(1, 6, 5)
    assert conv1.flops == teach.conv_flops(1, 6, 5, 28, 28)
    assert conv1.receptive_field == (5, 5)         # padding does not change the field's size
    assert result.row("features.3").receptive_field == (14, 14)
    assert result.row("classifier.0").params == teach.linear_params(400, 120)


def test_receptive_fields_of_a_small_stack_by_hand():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),            # r = 1 + 2*1 = 3,            j = 1
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, dilation=2),           # r = 3 + 2*2*1 = 7,          j = 1
        nn.MaxPool2d(2),                          # r = 7 + 1*1 = 8,            j = 2
        nn.Conv2d(4, 8, (3, 1), stride=2),        # r = 8 + 2*2 = 12 (h), 8 (w), j = 4; 3x4 map
        nn.AvgPool2d(3, stride=1, padding=1),     # r = 12 + 2*4 = 20, 8 + 2*4 = 16, j = 4
        nn.BatchNorm2d(8),
        nn.AdaptiveAvgPool2d(1),                  # one window of 3x4 cells: 20 + 2*4, 16 + 3*4
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    result = summary(model, (1, 20, 20))
    fields = [row.receptive_field for row in result.rows]
    jumps = [row.jump for row in result.rows]
    assert fields == [(3, 3), (3, 3), (7, 7), (8, 8), (12, 8), (20, 16), (20, 16), (28, 28),
                      None, None]
    assert jumps == [(1, 1), (1, 1), (1, 1), (2, 2), (4, 4), (4, 4), (4, 4), (12, 16), None, None]
    assert [row.output_shape for row in result.rows][4] == (1, 8, 3, 4)
    assert not result.approximate_rf
    lines = str(result).splitlines()
    assert next(line for line in lines if line.startswith("4 ")).split()[-3:] == ["12x8", "4", "2,304"]
    assert result.total_params == _numel(model)
    assert result.rows[4].flops == teach.conv_flops(4, 8, (3, 1), 3, 4)


def test_totals_trainable_and_frozen_layers():
    model = LeNet5()
    model.features.requires_grad_(False)
    result = summary(model, (1, 32, 32))
    frozen = 156 + 2416
    assert result.total_params == 61_706
    assert result.trainable_params == 61_706 - frozen
    assert result.non_trainable_params == frozen
    assert result.row("features.0").trainable_params == 0
    assert result.row("classifier.0").trainable_params == 48_120
    assert "Non-trainable params: 2,572" in str(result)
    assert result.param_bytes == 61_706 * 4


def test_summary_leaves_the_model_as_it_was():
    model = VGGSmall(batch_norm=True, widths=(4, 8), hidden=16)
    model.classifier.eval()                              # a mixed state must come back too
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (3, 32, 32), batch_size=2)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.training and not model.classifier.training
    for key, value in model.state_dict().items():        # BatchNorm statistics untouched
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()
    summary(model, (3, 32, 32))
    assert not any(m.training for m in model.modules())


def test_summary_runs_in_eval_mode_without_gradients():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append((self.training, cyconv.autograd.is_grad_enabled()))
            return x

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Probe())
    summary(model, (1, 5, 5))
    assert seen == [(False, False)]
    assert model.training


@pytest.mark.parametrize("model,shape", [(VGGSmall(), (3, 32, 32)), (ResNetSmall(), (3, 32, 32)),
                                         (DigitsNet(), (1, 8, 8))])
def test_classic_models_totals(model, shape):
    result = summary(model, shape)
    assert result.total_params == _numel(model)
    assert sum(row.params for row in result.rows) == _numel(model)   # every parameter in a row
    assert result.total_flops == sum(row.flops for row in result.rows) > 0
    for row in result.rows:
        if row.type == "Conv2d":
            assert row.params == sum(p.numel() for p in model.get_submodule(row.name).parameters())


def test_resnet_receptive_fields_follow_the_main_path():
    result = summary(ResNetSmall(), (3, 32, 32))
    assert result.approximate_rf
    assert "follows the main path" in str(result)
    assert result.total_params == 175_258
    # Stem 3; each stride-1 block adds 2 + 2; the shortcut's 1x1 convolution adds nothing.
    assert result.row("conv1").receptive_field == (3, 3)
    assert result.row("layer1.1.conv2").receptive_field == (11, 11)
    assert result.row("layer2.0.downsample.0").receptive_field == (11, 11)
    assert result.row("layer2.0.downsample.0").jump == (2, 2)
    # First stride-2 block: conv1 (3, s2) adds 2*1, conv2 adds 2*2 with the new jump of 2.
    assert result.row("layer2.0.conv1").receptive_field == (13, 13)
    assert result.row("layer2.0.conv2").receptive_field == (17, 17)
    # The ReLU after the residual addition continues from the main path (bn2).
    relus = [row for row in result.rows if row.name == "layer2.0.relu"]
    assert len(relus) == 2 and relus[-1].receptive_field == (17, 17)
    assert result.row("layer3.1.conv2").receptive_field == (53, 53)
    assert result.row("avgpool").receptive_field == (53 + 7 * 4,) * 2
    assert result.row("fc").receptive_field is None


def test_batch_size_and_dtype():
    one = summary(LeNet5(), (1, 32, 32))
    four = summary(LeNet5(), (1, 32, 32), batch_size=4)
    assert four.rows[0].output_shape == (4, 6, 28, 28)
    assert four.total_flops == 4 * one.total_flops
    assert four.total_params == one.total_params
    double = summary(LeNet5().double(), (1, 32, 32))
    assert double.dtype == "float64" and double.param_bytes == 61_706 * 8


def test_a_module_called_twice_is_counted_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    result = summary(model, (2, 6, 6))
    assert [row.name for row in result.rows] == ["conv", "conv"]
    assert [row.params for row in result.rows] == [38, 0]
    assert result.rows[1].repeated and result.total_params == 38
    assert [row.receptive_field for row in result.rows] == [(3, 3), (5, 5)]
    assert "(reused)" in str(result)


def test_a_leaf_model_and_other_input_ranks():
    result = summary(nn.Linear(5, 2), (5,))
    assert len(result.rows) == 1 and result.rows[0].name == "Linear"
    assert result.rows[0].params == 12 and result.rows[0].flops == 20
    assert result.rows[0].receptive_field is None


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"LeNet5 cannot run on input shape \(1, 8, 8\)"):
        summary(LeNet5(), (1, 8, 8))
    with pytest.raises(TypeError, match="Module"):
        summary("lenet5", (1, 32, 32))
    with pytest.raises(TypeError, match="input_shape"):
        summary(LeNet5(), "1,32,32")
    with pytest.raises(ValueError, match="positive"):
        summary(LeNet5(), (1, 0, 32))
    with pytest.raises(ValueError, match="batch_size"):
        summary(LeNet5(), (1, 32, 32), batch_size=0)
    model = LeNet5()
    with pytest.raises(ValueError):
        summary(model, (3, 32, 32))                       # wrong channels
    assert model.training and all(not m._forward_hooks for m in model.modules())


def test_top_level_export():
    exported = getattr(cyconv, "summary", None)
    if not callable(exported):
        pytest.skip("cyconv.summary is not exported from cyconv/__init__.py yet")
    assert exported(LeNet5(), (1, 32, 32)).total_params == 61_706
