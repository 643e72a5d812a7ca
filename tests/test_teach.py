"""Tests of cyconv.teach: the convolution matrix, the image kernels and the calculators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import cyconv
from cyconv import geometry, kernels, nn, reference, teach


# ---------------------------------------------------------------------------------------
# Convolution as a matrix
# ---------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    k_h, k_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    # Big enough for the dilated kernel to fit the padded input.
    h = draw(st.integers(max(1, dilation[0] * (k_h - 1) + 1 - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, dilation[1] * (k_w - 1) + 1 - 2 * padding[1]), 7))
    seed = draw(st.integers(0, 2**16))
    return dict(c_in=c_in, c_out=c_out, k=(k_h, k_w), h=h, w=w, stride=stride,
                padding=padding, dilation=dilation, groups=groups, seed=seed)


@given(conv_cases())
def test_conv_as_matrix_equals_reference_conv(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((1, case["c_in"], case["h"], case["w"]))
    weight = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["k"])
    options = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                   groups=case["groups"])
    matrix = teach.conv_as_matrix(x.shape[1:], weight, **options)
    expected = reference.conv2d(x, weight, **options)
    assert matrix.shape == (expected[0].size, x[0].size)
    np.testing.assert_allclose(matrix @ x.ravel(), expected.ravel(), rtol=1e-10, atol=1e-10)


def test_conv_as_matrix_single_channel_shapes_and_same_padding():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((5, 6)).astype(np.float32)
    kernel = rng.standard_normal((3, 3)).astype(np.float32)
    matrix = teach.conv_as_matrix((5, 6), kernel)
    assert matrix.shape == (3 * 4, 5 * 6) and matrix.dtype == np.float32
    expected = reference.conv2d_loops(image[None, None], kernel[None, None])
    np.testing.assert_allclose(matrix @ image.ravel(), expected.ravel(), rtol=1e-5, atol=1e-5)

    same = teach.conv_as_matrix((5, 6), kernel, padding="same")
    assert same.shape == (30, 30)
    expected = reference.conv2d(image[None, None], kernel[None, None], padding="same")
    np.testing.assert_allclose(same @ image.ravel(), expected.ravel(), rtol=1e-5, atol=1e-5)


def test_conv_as_matrix_takes_a_layer_weight_and_refuses_a_shape():
    layer = nn.Conv2d(2, 3, 3)
    matrix = teach.conv_as_matrix((2, 5, 5), layer.weight)
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5)).astype(np.float32)
    expected = kernels.conv2d(x, layer.weight.data)
    np.testing.assert_allclose(matrix @ x.ravel(), expected.ravel(), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="weights themselves"):
        teach.conv_as_matrix((4, 4), (3, 3))


def test_conv_as_matrix_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="input channels"):
        teach.conv_as_matrix((3, 5, 5), np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="input_shape"):
        teach.conv_as_matrix((1, 1, 5, 5), np.ones((3, 3)))


def test_structure_counts_4x4_input_3x3_kernel_by_hand():
    # 2x2 outputs, 16 inputs: 4 x 16 = 64 entries; each row holds the 9 weights: 36.
    info = teach.compare_with_dense((4, 4), (3, 3), bias=False)
    assert info.input_shape == (1, 4, 4) and info.output_shape == (1, 2, 2)
    assert info.matrix_shape == (4, 16)
    assert (info.entries, info.nonzeros, info.zeros) == (64, 36, 28)
    assert info.distinct_weights == 9
    assert info.conv_params == 9 and info.dense_params == 64
    assert info.uses_per_weight == 4.0
    with_bias = teach.compare_with_dense((4, 4), np.ones((3, 3)))
    assert with_bias.conv_params == 10 and with_bias.dense_params == 68
    text = with_bias.explain()
    assert "4 x 16 = 64 entries" in text and "36 hold a weight" in text
    assert "only 9 different weights" in text and "convolution 10" in text and "68" in text
    assert str(with_bias) == text


def test_structure_counts_with_padding_and_stride():
    # Padding 1 on 4x4: 16 outputs; corner outputs see 4 taps, edge ones 6, inner ones 9.
    info = teach.compare_with_dense((4, 4), (3, 3), padding=1)
    assert info.matrix_shape == (16, 16)
    assert info.nonzeros == 4 * 4 + 8 * 6 + 4 * 9
    assert info.distinct_weights == 9
    # Stride 2 on 5x5: 4 outputs of 9 taps each.
    info = teach.compare_with_dense((5, 5), (3, 3), stride=2)
    assert info.matrix_shape == (4, 25) and info.nonzeros == 36
    # A 1x1 image padded by 1: only the centre tap ever meets the input.
    info = teach.compare_with_dense((1, 1), (3, 3), padding=1)
    assert (info.nonzeros, info.distinct_weights) == (1, 1)
    # Multi-channel: LeNet's C1 on 28x28 (MNIST-sized).
    info = teach.compare_with_dense((1, 28, 28), (6, 1, 5, 5))
    assert info.matrix_shape == (6 * 24 * 24, 784)
    assert info.conv_params == 156 and info.distinct_weights == 150
    assert info.dense_params == 6 * 24 * 24 * 784 + 6 * 24 * 24


def test_nonzeros_match_the_matrix():
    rng = np.random.default_rng(3)
    weight = rng.uniform(0.5, 1.5, (2, 2, 3, 2))       # no weight is zero
    matrix = teach.conv_as_matrix((2, 5, 4), weight, stride=(2, 1), padding=1)
    info = teach.compare_with_dense((2, 5, 4), weight, stride=(2, 1), padding=1)
    assert info.nonzeros == np.count_nonzero(matrix)
    assert info.distinct_weights == np.unique(matrix[matrix != 0]).size


def test_show_conv_matrix_draws_the_toeplitz_pattern():
    text = teach.show_conv_matrix((4, 4), (3, 3))
    lines = text.splitlines()
    assert lines[:4] == ["kernel (output channel 0, input channel 0):", "  a b c", "  d e f", "  g h i"]
    assert lines[-4:] == [
        "y[0,0] | a b c . | d e f . | g h i . | . . . . |",
        "y[0,1] | . a b c | . d e f | . g h i | . . . . |",
        "y[1,0] | . . . . | a b c . | d e f . | g h i . |",
        "y[1,1] | . . . . | . a b c | . d e f | . g h i |",
    ]


def test_show_conv_matrix_channels_values_and_limits():
    text = teach.show_conv_matrix((2, 3, 3), (2, 2, 2, 2))
    assert "y[1,1,1] | . . . | . i j | . k l || . . . | . m n | . o p |" in text
    values = teach.show_conv_matrix((3, 3), np.array([[1.0, -2.0], [0.5, 3.0]]), values=True)
    assert "y[0,0] |   1  -2   . | 0.5   3   . |   .   .   . |" in values
    many = teach.show_conv_matrix((3, 4, 4), (4, 3, 3, 3))          # 108 weights: w0..w107
    assert "w107" in many
    with pytest.raises(ValueError, match="max_columns"):
        teach.show_conv_matrix((1, 28, 28), (3, 3))
    with pytest.raises(ValueError, match="needs the weights"):
        teach.show_conv_matrix((3, 3), (2, 2), values=True)


# ---------------------------------------------------------------------------------------
# Image kernels
# ---------------------------------------------------------------------------------------

def test_kernel_table():
    expected = {"identity", "box_blur", "gaussian_blur", "gaussian_blur_5x5", "sharpen", "sobel_x",
                "sobel_y", "prewitt_x", "prewitt_y", "outline"}
    assert expected <= set(teach.KERNELS)
    assert set(teach.DESCRIPTIONS) == set(teach.KERNELS) == set(teach.kernel_names())
    for name, kernel in teach.KERNELS.items():
        assert kernel.dtype == np.float32 and kernel.ndim == 2, name
        assert not kernel.flags.writeable, name
        total = float(kernel.sum())
        if name in ("sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "outline", "laplacian"):
            assert total == pytest.approx(0.0, abs=1e-6), name        # flat areas -> 0
        else:
            assert total == pytest.approx(1.0, abs=1e-6), name        # flat areas kept
    assert teach.KERNELS["gaussian_blur_5x5"].shape == (5, 5)
    np.testing.assert_array_equal(teach.KERNELS["sobel_y"], teach.KERNELS["sobel_x"].T)
    copy = teach.get_kernel("sobel_x")
    copy[0, 0] = 42
    assert teach.KERNELS["sobel_x"][0, 0] == -1
    with pytest.raises(ValueError, match="unknown kernel"):
        teach.get_kernel("nope")


def _step(vertical: bool, shape=(6, 7), at=3) -> np.ndarray:
    image = np.zeros(shape, np.float32)
    if vertical:
        image[:, at:] = 1.0            # dark left, bright right: a vertical edge
    else:
        image[at:, :] = 1.0            # dark top, bright bottom: a horizontal edge
    return image


def test_sobel_x_finds_vertical_edges_with_cross_correlation_signs():
    response = teach.apply_kernel(_step(vertical=True), "sobel_x", padding="valid")
    # Valid output column j looks at input columns j..j+2; the edge is between 2 and 3.
    # Columns 1 and 2 straddle it: right column (1+2+1) minus left column (0) = +4.
    np.testing.assert_array_equal(response, np.tile([0, 4, 4, 0, 0], (4, 1)).astype(np.float32))
    assert not teach.apply_kernel(_step(vertical=True), "sobel_y", padding="valid").any()
    horizontal = teach.apply_kernel(_step(vertical=False), "sobel_y", padding="valid")
    np.testing.assert_array_equal(horizontal, np.tile([[0], [4], [4], [0]], (1, 5)).astype(np.float32))
    assert not teach.apply_kernel(_step(vertical=False), "sobel_x", padding="valid").any()
    prewitt = teach.apply_kernel(_step(vertical=True), "prewitt_x", padding="valid")
    assert prewitt.max() == 3 and prewitt.min() == 0


@pytest.mark.parametrize("name", ["sobel_x", "emboss", "sharpen", "gaussian_blur_5x5"])
def test_apply_kernel_is_cross_correlation(name):
    image = np.random.default_rng(4).standard_normal((7, 9))
    kernel = teach.KERNELS[name].astype(np.float64)
    np.testing.assert_allclose(teach.apply_kernel(image, kernel),
                               scipy.signal.correlate2d(image, kernel, mode="same"), atol=1e-12)


def test_identity_and_blurs_on_simple_images():
    image = np.random.default_rng(5).random((3, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(teach.apply_kernel(image, "identity"), image)
    flat = np.full((6, 7), 0.25, np.float32)
    for name in ("box_blur", "gaussian_blur", "gaussian_blur_5x5", "sharpen"):
        np.testing.assert_allclose(teach.apply_kernel(flat, name, padding="valid"),
                                   0.25, rtol=1e-6, err_msg=name)
        same = teach.apply_kernel(flat, name)           # 'same': zeros around the image
        size = teach.KERNELS[name].shape[0] // 2
        np.testing.assert_allclose(same[size:-size, size:-size], 0.25, rtol=1e-6)
    assert not teach.apply_kernel(flat, "outline", padding="valid").any()


def test_apply_kernel_layouts_and_dtypes():
    rng = np.random.default_rng(6)
    rgb = rng.random((3, 5, 5))
    out = teach.apply_kernel(rgb, "sobel_x")
    assert out.shape == (3, 5, 5) and out.dtype == np.float64
    for c in range(3):                                  # each channel on its own
        np.testing.assert_allclose(out[c], teach.apply_kernel(rgb[c], "sobel_x"))
    grey = (rng.random((4, 4)) * 255).astype(np.uint8)
    out = teach.apply_kernel(grey, "box_blur", padding="valid")
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert out[0, 0] == pytest.approx(grey[:3, :3].mean(), rel=1e-5)
    assert teach.apply_kernel(grey, "box_blur", padding=1).shape == (4, 4)
    with pytest.raises(ValueError, match="image must be"):
        teach.apply_kernel(np.zeros(5), "box_blur")
    with pytest.raises(ValueError, match="kernel must be"):
        teach.apply_kernel(np.zeros((5, 5)), np.ones(3))
    with pytest.raises(ValueError, match="unknown kernel"):
        teach.apply_kernel(np.zeros((5, 5)), "blurry")


# ---------------------------------------------------------------------------------------
# Calculators
# ---------------------------------------------------------------------------------------

def test_output_sizes_by_hand():
    assert teach.conv_output_size(32, 5) == 28            # LeNet C1
    assert teach.conv_output_size(28, 5, padding=2) == 28
    assert teach.conv_output_size(32, 3, stride=2, padding=1) == 16
    assert teach.conv_output_size(7, 3, dilation=2) == 3
    assert teach.conv_output_size(10, 4, padding="same") == 10
    assert teach.conv_output_size(10, 4, padding="valid") == 7
    assert teach.conv_output_size(5, 2, padding=(0, 1)) == 5
    assert teach.conv_output_shape((28, 20), (5, 3), padding=(2, 0)) == (28, 18)
    assert teach.pool_output_size(28, 2) == 14
    assert teach.pool_output_size(5, 2) == 2
    assert teach.pool_output_size(5, 2, ceil_mode=True) == 3
    assert teach.pool_output_size(7, 3, stride=2, padding=1) == 4
    with pytest.raises(ValueError, match="does not fit"):
        teach.conv_output_size(3, 5)
    with pytest.raises(ValueError, match="stride"):
        teach.conv_output_size(10, 3, stride=0)
    with pytest.raises(TypeError, match="kernel"):
        teach.conv_output_size(10, 2.5)


def test_output_size_uses_the_geometry_formula(monkeypatch):
    calls = []
    original = geometry.output_size

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(geometry, "output_size", spy)
    assert teach.conv_output_size(32, 5) == 28
    assert calls


@given(size=st.integers(1, 12), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2))
def test_conv_output_size_matches_the_kernel(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    x = np.zeros((1, 1, size, size + 1), np.float32)
    w = np.zeros((1, 1, kernel, kernel), np.float32)
    if size + 2 * padding < span:
        with pytest.raises(ValueError):
            teach.conv_output_size(size, kernel, stride, padding, dilation)
        return
    out = kernels.conv2d(x, w, None, stride, padding, dilation)
    assert out.shape[2:] == (teach.conv_output_size(size, kernel, stride, padding, dilation),
                             teach.conv_output_size(size + 1, kernel, stride, padding, dilation))


@given(size=st.integers(2, 12), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       ceil_mode=st.booleans(), data=st.data())
def test_pool_output_size_matches_the_kernel(size, kernel, stride, ceil_mode, data):
    padding = data.draw(st.integers(0, kernel // 2))
    if size + 2 * padding < kernel:
        return
    x = np.zeros((1, 1, size, size), np.float32)
    out = kernels.max_pool2d(x, kernel, stride, padding, 1, ceil_mode)
    assert out.shape[2] == teach.pool_output_size(size, kernel, stride, padding, 1, ceil_mode)


@pytest.mark.parametrize("c_in,c_out,k,groups,bias", [
    (1, 6, 5, 1, True), (6, 16, 5, 1, True), (3, 8, (3, 1), 1, False), (4, 8, 3, 2, True),
    (8, 8, 3, 8, False)])
def test_conv_params_match_the_layer(c_in, c_out, k, groups, bias):
    layer = nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
    assert teach.conv_params(c_in, c_out, k, groups, bias) == sum(p.numel() for p in layer.parameters())


def test_parameter_counts_by_hand():
    assert teach.conv_params(1, 6, 5) == 156
    assert teach.conv_params(6, 16, 5) == 2416
    assert teach.linear_params(400, 120) == 48120
    assert teach.linear_params(120, 84) == 10164
    assert teach.linear_params(84, 10) == 850
    assert teach.linear_params(84, 10, bias=False) == 840
    assert teach.batchnorm_params(16) == 32 and teach.batchnorm_params(16, affine=False) == 0
    layer = nn.Linear(7, 3)
    assert teach.linear_params(7, 3) == sum(p.numel() for p in layer.parameters())
    with pytest.raises(ValueError, match="groups"):
        teach.conv_params(3, 4, 3, groups=2)


def test_flops_agree_with_the_geometry():
    assert teach.conv_flops(1, 6, 5, 28, 28) == 235_200
    assert teach.linear_flops(400, 120) == 96_000
    assert teach.linear_flops(400, 120, batch=3) == 288_000
    geo = geometry.conv2d_geometry((2, 4, 9, 9), (6, 2, 3, 3), stride=2, padding=1, groups=2)
    assert teach.conv_flops(4, 6, 3, geo.out_h, geo.out_w, groups=2, batch=2) == geo.flops


def test_receptive_field_of_a_small_stack_by_hand():
    fields = teach.receptive_field([(3, 1), (3, 1), (2, 2), (3, 1)])
    assert [f.size for f in fields] == [3, 5, 6, 10]
    assert [f.jump for f in fields] == [1, 1, 2, 2]
    # LeNet-5: C1 5x5, S2 2x2/2, C3 5x5 -> 5 + (2-1)*1 + (5-1)*2 = 14, S4 -> 16 with jump 4.
    lenet = teach.receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)])
    assert [(f.size, f.jump) for f in lenet] == [(5, 1), (6, 2), (14, 2), (16, 4)]
    # Dilation 2 spreads a 3-tap kernel over 5 pixels; dicts work too.
    assert teach.receptive_field([{"kernel": 3, "dilation": 2}])[0].size == 5
    # Centres: a padded 3x3 convolution keeps them, an unpadded one moves them by 1 pixel.
    assert teach.receptive_field([(3, 1, 1, 1)])[0].start == 0.5
    assert teach.receptive_field([(3, 1)])[0].start == 1.5
    with pytest.raises(TypeError, match="layer 0"):
        teach.receptive_field([3])
    with pytest.raises(ValueError, match="layer 0"):
        teach.receptive_field([{"size": 3}])


def test_receptive_field_matches_the_gradient_of_a_real_network():
    # All-positive weights and no ReLU/max: an output depends on exactly the input pixels
    # whose gradient is non-zero, so the extent of that gradient is the receptive field.
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3, dilation=2), nn.AvgPool2d(2),
                          nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 2))
    for module in model:
        for p in module.parameters():
            p.data[...] = 1.0
    x = cyconv.Tensor(np.zeros((1, 1, 40, 40)), requires_grad=True)
    model.double()
    out = model(x)
    out[0, 0, 0, 0].backward()
    rows = np.nonzero(x.grad[0, 0].any(axis=1))[0]
    expected = teach.receptive_field([(3, 1), (3, 1, 2), (2, 2), (3, 2), (2, 1)])[-1]
    assert rows.max() - rows.min() + 1 == expected.size == 16
    # The field's centre, in pixel coordinates, is the centre of those rows.
    assert (rows.min() + rows.max() + 1) / 2 == expected.start


def test_adaptive_window():
    assert teach.adaptive_window(8, 1) == (8, 8)
    assert teach.adaptive_window(8, 4) == (2, 2)
    assert teach.adaptive_window(5, 3)[0] == 3          # windows [0,2), [1,4), [3,5)
