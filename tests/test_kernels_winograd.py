"""The Winograd F(2x2, 3x3) kernel against the NumPy reference and its own formulas.

``algorithm="winograd"`` runs 3x3 convolutions with stride 1 and dilation 1 or 2, forward
and input gradient. Its transforms round differently from the direct sum (within float32's
precision), so the comparisons use the same tolerances as the other algorithms; infs and
NaNs must come out exactly where the reference has them (the kernel reports them, and the
blocked direct sum computes that output again).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyconv
from cyconv import kernels as K
from cyconv import reference as R
from cyconv.geometry import conv2d_geometry
from cyconv.kernels import _conv_winograd
from cyconv.kernels import conv as conv_module

from test_kernels_conv import DTYPES, assert_matches, random_problem

#: Winograd's G (Lavin and Gray, 2016), written out here to check the kernel's transform.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def check_winograd(x, w, b, padding, groups, dtype, dilation=1):
    """Forward and input gradient with "winograd" against the reference."""
    hyper = (1, padding, dilation, groups)
    geo = conv2d_geometry(x.shape, w.shape, *hyper)
    y = K.conv2d(x, w, b, *hyper, algorithm="winograd")
    assert_matches(y, R.conv2d(x, w, b, *hyper), dtype, geo.in_channels // groups * 9)
    gy = np.random.default_rng(1).standard_normal(geo.output_shape).astype(dtype)
    if geo.padding[0] <= 2 * dilation and geo.padding[2] <= 2 * dilation:
        gx = K.conv2d_grad_input(gy, w, x.shape, *hyper, algorithm="winograd")
        assert_matches(gx, R.conv2d_grad_input(gy, w, x.shape, *hyper), dtype,
                       geo.out_channels // groups * 9)


@st.composite
def winograd_configs(draw):
    """3x3, stride 1, dilation 1 or 2: channels across blocks of 4 (and fewer), groups,
    widths across vectors of 8 tiles (odd and even, and with dilation 2 every remainder
    of 4), images smaller than a task or many to a task, padding of every size the kernel
    takes, 'same' and asymmetric."""
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 9))
    c_out = groups * draw(st.integers(1, 9))
    dilation = draw(st.sampled_from([1, 2]))
    reach = 2 * dilation                       # the kernel's extent less one
    padding = draw(st.one_of(st.integers(0, reach + 1),
                             st.tuples(st.integers(0, reach), st.integers(0, reach)),
                             st.just("same")))
    pad = ((dilation,) * 2 if padding == "same" else padding if isinstance(padding, tuple)
           else (padding,) * 2)
    h = draw(st.integers(max(1, reach + 1 - 2 * pad[0]), 21))
    w = draw(st.integers(max(1, reach + 1 - 2 * pad[1]), 40))
    return dict(input_shape=(draw(st.integers(1, 4)), c_in, h, w),
                weight_shape=(c_out, c_in // groups, 3, 3), padding=padding, groups=groups,
                dilation=dilation)


@given(config=winograd_configs(), dtype=st.sampled_from(DTYPES), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_random_configs_match_reference(config, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = random_problem(rng, config["input_shape"], config["weight_shape"], dtype, bias)
    check_winograd(x, w, b, config["padding"], config["groups"], dtype, config["dilation"])


@pytest.mark.parametrize("input_shape, weight_shape, padding, groups, dilation", [
    ((1, 1, 1, 1), (1, 1, 3, 3), 1, 1, 1),       # 1x1 input: one tile, three quarters outside
    ((2, 3, 3, 3), (4, 3, 3, 3), 0, 1, 1),       # kernel as large as the input: 1x1 output
    ((1, 2, 1, 1), (5, 2, 3, 3), 2, 1, 1),       # kernel larger than the input, padded
    ((2, 6, 9, 9), (6, 1, 3, 3), 1, 6, 1),       # groups = channels
    ((3, 8, 2, 50), (8, 8, 3, 3), 1, 1, 1),      # one row of tiles, 25 of them
    ((1, 4, 49, 3), (4, 4, 3, 3), 0, 1, 1),      # one output column: odd width, 1
    ((5, 4, 5, 5), (13, 4, 3, 3), 1, 1, 1),      # tasks across images, channels left over
    ((1, 1, 1, 1), (1, 1, 3, 3), 2, 1, 2),       # dilation 2: 1x1 input, 1x1 output
    ((2, 3, 5, 5), (4, 3, 3, 3), 0, 1, 2),       # dilated kernel as large as the input
    ((1, 2, 1, 2), (3, 2, 3, 3), 4, 1, 2),       # dilated kernel larger than the input
    ((2, 6, 9, 9), (6, 1, 3, 3), 2, 6, 2),       # groups = channels
    ((2, 4, 28, 28), (8, 4, 3, 3), 2, 1, 2),     # the dilated benchmark's planes: rows of 28
    ((3, 8, 6, 53), (8, 8, 3, 3), 2, 1, 2),      # rows of 53: 28 tiles, 3 x 8 at once, 4 alone
    ((1, 4, 30, 5), (4, 4, 3, 3), 0, 1, 2),      # one output column
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(input_shape, weight_shape, padding, groups, dilation, dtype):
    rng = np.random.default_rng(3)
    x, w, b = random_problem(rng, input_shape, weight_shape, dtype)
    check_winograd(x, w, b, padding, groups, dtype, dilation)


SPAN = conv_module.WINOGRAD_SPAN          # tiles of one register tile: 24, or 48 with AVX-512


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("spans", [1, 2, 3, 4])
def test_any_task_size(spans, dilation, monkeypatch):
    """Tasks of 1 to 4 spans of tiles give the reference's numbers (252 tiles in rows of 14,
    with either dilation: several tasks and a short last one, rows of tiles split across
    tasks)."""
    monkeypatch.setattr(conv_module, "WINOGRAD_MAX_TILES", spans * SPAN)
    assert conv_module.winograd_tiles(4, 8, 4) == spans * SPAN
    rng = np.random.default_rng(4)
    x, w, b = random_problem(rng, (3, 4, 11, 27), (6, 4, 3, 3), np.float32)
    assert (spans * SPAN) % 14 != 0                       # some row of 14 tiles is split
    check_winograd(x, w, b, dilation, 1, np.float32, dilation)


def test_tiles_per_task():
    """As many whole spans as keep V and M (16 positions x (Cg + Kp) x tiles) within
    WINOGRAD_TASK_BYTES, at least one, at most WINOGRAD_MAX_TILES tiles."""
    span_bytes = 16 * (64 + 64) * SPAN * 4
    assert span_bytes > conv_module.WINOGRAD_TASK_BYTES / 2
    assert conv_module.winograd_tiles(64, 64, 4) == SPAN
    assert conv_module.winograd_tiles(16, 16, 4) == conv_module.WINOGRAD_MAX_TILES
    assert conv_module.winograd_tiles(512, 512, 8) == SPAN             # at least one


def test_tiles_per_task_follow_the_byte_limit(monkeypatch):
    monkeypatch.setattr(conv_module, "WINOGRAD_MAX_TILES", 4 * SPAN)
    span_bytes = 16 * (4 + 8) * SPAN * 4
    for spans in (1, 2, 3):
        monkeypatch.setattr(conv_module, "WINOGRAD_TASK_BYTES", spans * span_bytes + 1)
        assert conv_module.winograd_tiles(4, 8, 4) == spans * SPAN


@pytest.mark.parametrize("threads", [2, 3])
def test_same_result_on_any_number_of_threads(threads):
    """Each tile is computed by one thread, with the same operations: bit for bit, and
    the reference's values."""
    rng = np.random.default_rng(5)
    x, w, b = random_problem(rng, (2, 8, 13, 17), (12, 8, 3, 3), np.float32)
    old = cyconv.get_num_threads()
    try:
        cyconv.set_num_threads(1)
        one = K.conv2d(x, w, b, 1, 1, algorithm="winograd")
        cyconv.set_num_threads(threads)
        many = K.conv2d(x, w, b, 1, 1, algorithm="winograd")
    finally:
        cyconv.set_num_threads(old)
    np.testing.assert_array_equal(one, many)
    assert_matches(many, R.conv2d(x, w, b, 1, 1), np.float32, 8 * 9)


@pytest.mark.parametrize("threads", [1, 2])
def test_weight_transform_is_G_w_Gt_packed_in_blocks_of_4(threads):
    rng = np.random.default_rng(6)
    groups, out_g, cg = 2, 5, 3 + 16                            # channels: 16 at a time, and 3
    w = rng.standard_normal((groups * out_g, cg, 3, 3))
    u = np.full((groups, 16, 2, cg, 4), np.nan)                 # Kp = 8: 3 padding filters
    _conv_winograd.transform_weights(w, u, threads)
    expected = np.einsum("ip,kcpq,jq->kcij", G, w, G).reshape(groups, out_g, cg, 16)
    for g in range(groups):
        for k in range(8):
            want = expected[g, k] if k < out_g else np.zeros((cg, 16))
            np.testing.assert_allclose(u[g, :, k // 4, :, k % 4].T, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", ["input", "weight", "bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dilation", [1, 2])
def test_non_finite_values_give_the_references_infs_and_nans(value, where, dtype, dilation,
                                                             monkeypatch):
    """An inf spreads over the transforms of its tiles (inf - inf = NaN): the kernel says
    so, and the output is computed again by the blocked direct sum."""
    fallbacks = []
    blocked = conv_module._blocked_conv
    monkeypatch.setattr(conv_module, "_blocked_conv",
                        lambda *args: fallbacks.append(1) or blocked(*args))
    rng = np.random.default_rng(8)
    x, w, b = random_problem(rng, (2, 3, 9, 10), (4, 3, 3, 3), dtype)
    K.conv2d(x, w, b, 1, dilation, dilation, algorithm="winograd")
    assert fallbacks == []                                       # finite: no second pass
    {"input": x[1, 2], "weight": w[3, 1], "bias": b[2:3]}[where][..., -1] = value
    y = K.conv2d(x, w, b, 1, dilation, dilation, algorithm="winograd")
    with np.errstate(invalid="ignore"):                          # inf * 0 in the reference
        y_ref = R.conv2d(x, w, b, 1, dilation, dilation)
    assert fallbacks == [1]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(y_ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(y_ref))
    finite = np.isfinite(y_ref)
    assert_matches(np.where(finite, y, 0), np.where(finite, y_ref, 0), dtype, 27)


@pytest.mark.parametrize("call, message", [
    (lambda x, w: K.conv2d(x, w, None, 2, 1, algorithm="winograd"),
     r"algorithm='winograd' needs a 3x3 kernel, stride 1 and dilation 1 or 2 \(got kernel "
     r"\(3, 3\), stride \(2, 2\), dilation \(1, 1\)\)"),
    (lambda x, w: K.conv2d(x, w, None, 1, 3, 3, algorithm="winograd"),
     r"needs a 3x3 kernel, stride 1 and dilation 1 or 2 .*dilation \(3, 3\)"),
    (lambda x, w: K.conv2d(x, w, None, 1, 2, (1, 2), algorithm="winograd"),
     r"needs a 3x3 kernel, stride 1 and dilation 1 or 2 .*dilation \(1, 2\)"),
    (lambda x, w: K.conv2d(x, w[:, :, :2], None, 1, 1, algorithm="winograd"),
     r"needs a 3x3 kernel, .*got kernel \(2, 3\)"),
    (lambda x, w: K.conv2d_grad_input(np.ones((1, 4, 12, 12)), w, x.shape, 1, 3,
                                      algorithm="winograd"),
     r"algorithm='winograd' needs padding \(top, left\) of at most 2 \* dilation = 2 for the "
     r"input gradient \(got padding \(3, 3, 3, 3\)\); use 'auto', 'direct', 'im2col' or "
     r"'blocked'"),
    (lambda x, w: K.conv2d_grad_input(np.ones((1, 4, 14, 14)), w, x.shape, 1, 5, 2,
                                      algorithm="winograd"),
     r"needs padding \(top, left\) of at most 2 \* dilation = 4 for the input gradient "
     r"\(got padding \(5, 5, 5, 5\)\)"),
    (lambda x, w: K.conv2d_grad_weight(np.ones((1, 4, 8, 8)), x, w.shape, 1, 1,
                                       algorithm="winograd"),
     r"algorithm='winograd' needs a forward pass or an input gradient \(not the weight "
     r"gradient\)"),
])
def test_refuses_what_it_cannot_compute(call, message):
    x, w = np.ones((1, 2, 8, 8)), np.ones((4, 2, 3, 3))
    with pytest.raises(ValueError, match=message):
        call(x, w)


SHORT_TILE = "winograd" if conv_module.TILE == 16 else "blocked"   # tiles over channels: AVX-512


@pytest.mark.parametrize("input_shape, weight_shape, groups, expected", [
    ((2, 32, 32, 32), (64, 32, 3, 3), 1, SHORT_TILE),    # 32 -> 64: blocked's 2 x 8 tile
    ((2, 48, 32, 32), (48, 48, 3, 3), 1, SHORT_TILE),    # 48 -> 48, the same
    ((2, 32, 32, 32), (32, 32, 3, 3), 1, "blocked"),     # 32 x 32 pairs of channels: too few
    ((2, 16, 32, 32), (128, 16, 3, 3), 1, "blocked"),    # 16 input channels: too few
    ((2, 32, 56, 56), (64, 32, 3, 3), 1, "blocked"),     # rows of 56: blocked's 2 x 14 tile
    ((2, 64, 8, 8), (64, 64, 3, 3), 1, "blocked"),       # rows of 8: too narrow for Winograd
    ((2, 64, 24, 24), (64, 64, 3, 3), 1, "winograd"),    # 64 channels, 24 wide
    ((2, 64, 23, 23), (64, 64, 3, 3), 1, SHORT_TILE),    # ... 23 wide: blocked's 2 x 8 tile
    ((2, 64, 24, 24), (63, 64, 3, 3), 1, "blocked"),     # 63 output channels
    ((2, 128, 12, 12), (128, 128, 3, 3), 1, "winograd"),
    ((2, 128, 11, 11), (128, 128, 3, 3), 1, "blocked"),
    ((2, 128, 32, 32), (128, 1, 3, 3), 128, "blocked"),  # depthwise: 1 channel a group
])
def test_auto_picks_winograd_for_many_channels_on_wide_images(input_shape, weight_shape,
                                                               groups, expected, monkeypatch):
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_SIZES", ((64, 24), (128, 12)))
    monkeypatch.setattr(conv_module, "WINOGRAD_SHORT_TILE_MIN", (32, 2048, 16))
    geo = conv2d_geometry(input_shape, weight_shape, 1, 1, 1, groups)
    assert K.choose_algorithm(geo, "output") == expected
    if input_shape[1] < 64 <= weight_shape[0]:              # the short-tile rule: float32 only
        assert K.choose_algorithm(geo, "output", np.float64) != "winograd"
    grad_input = "winograd" if expected == "winograd" else K.choose_algorithm(geo, "grad_input")
    assert K.choose_algorithm(geo, "grad_input") == grad_input
    assert K.choose_algorithm(geo, "grad_weight") != "winograd"
    geo = conv2d_geometry(input_shape, weight_shape, 2, 1, 1, groups)   # stride 2: never
    assert K.choose_algorithm(geo, "output") != "winograd"


@pytest.mark.parametrize("input_shape, weight_shape, expected", [
    ((8, 64, 28, 28), (64, 64, 3, 3), "winograd"),        # the dilated benchmark layer
    ((8, 128, 24, 24), (128, 128, 3, 3), "winograd"),     # 24 wide: the narrowest
    ((8, 128, 23, 23), (128, 128, 3, 3), "blocked"),      # 23 wide: too narrow with dilation 2
    ((8, 128, 14, 14), (128, 128, 3, 3), "blocked"),      # 14 wide: pairs of tiles fill 7/8
])
def test_auto_picks_winograd_with_dilation_2_on_wide_images(input_shape, weight_shape,
                                                            expected, monkeypatch):
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_SIZES", ((64, 24), (128, 12)))
    monkeypatch.setattr(conv_module, "WINOGRAD_DILATED_MIN_WIDTH", 24)
    geo = conv2d_geometry(input_shape, weight_shape, 1, 2, 2)
    assert K.choose_algorithm(geo, "output") == expected
    assert (K.choose_algorithm(geo, "grad_input") == "winograd") == (expected == "winograd")
    geo = conv2d_geometry(input_shape, weight_shape, 1, 3, 3)            # dilation 3: never
    assert K.choose_algorithm(geo, "output") != "winograd"
    assert K.choose_algorithm(conv2d_geometry((8, 128, 14, 14), (128, 128, 3, 3), 1, 1),
                              "output") == "winograd"                   # 14 wide: undilated


@pytest.mark.parametrize("input_shape, c_out, pads, spans, dilation", [
    ((1, 3, 1, 1), 2, (1, 1, 1, 1), 1, 1),       # one tile, mostly padding
    ((2, 5, 9, 7), 6, (0, 2, 3, 0), 1, 1),       # asymmetric padding, odd sizes
    ((3, 4, 13, 40), 9, (2, 1, 1, 2), 2, 1),     # rows of tiles split across tasks
    ((2, 8, 20, 17), 4, (3, 3, 3, 3), 1, 1),     # padding 3 on every side
    ((1, 3, 1, 1), 2, (2, 2, 2, 2), 1, 2),       # dilation 2: one pair of tiles, mostly padding
    ((2, 5, 11, 9), 6, (0, 4, 3, 1), 1, 2),      # asymmetric padding, odd sizes
    ((3, 4, 13, 41), 9, (4, 1, 2, 4), 2, 2),     # rows of tiles split across tasks
])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_stays_inside_a_workspace_of_exactly_its_size(input_shape, c_out, pads, spans,
                                                             dilation, threads):
    """conv2d_forward called directly, with a workspace of exactly workspace_size values a
    thread (NaN-filled) followed by NaN guard values, and transform_weights with a NaN-filled
    u: every guard stays NaN (nothing written past the workspace), u comes out finite (every
    value written), no non-finite output is reported (no NaN of the workspace read), and y
    is the reference's."""
    rng = np.random.default_rng(sum(input_shape) + c_out + threads)
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal((c_out, input_shape[1], 3, 3)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    top, bottom, left, right = pads
    expected = R.conv2d(np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))), w, b,
                        dilation=dilation)
    kp = -(-c_out // 4) * 4
    tiles = spans * _conv_winograd.SPAN_TILES
    size = _conv_winograd.workspace_size(input_shape[1], kp, expected.shape[3], tiles, dilation)
    memory = np.full(threads * size + 64, np.nan, np.float32)
    work = memory[:threads * size].reshape(threads, size)
    u = np.full((1, 16, kp // 4, input_shape[1], 4), np.nan, np.float32)
    _conv_winograd.transform_weights(w, u, threads)
    assert np.isfinite(u).all()
    y = np.full(expected.shape, np.nan, np.float32)
    nonfinite = np.zeros(threads, np.intc)
    _conv_winograd.conv2d_forward(x, u, b, y, work, nonfinite, tiles, top, left, dilation, 1,
                                  threads)
    assert np.isnan(memory[threads * size:]).all()
    assert not nonfinite.any()
    assert_matches(y, expected, np.float32, input_shape[1] * 9)


@pytest.mark.parametrize("tiles", [0, SPAN // 2, SPAN + 2])
def test_kernel_refuses_tasks_that_are_not_whole_spans(tiles):
    """The products run on whole spans of tiles, and with dilation 2 each task must start at
    an even tile: conv2d_forward says so rather than compute something else."""
    x = np.ones((1, 4, 8, 8), np.float32)
    u = np.zeros((1, 16, 1, 4, 4), np.float32)
    y = np.empty((1, 4, 8, 8), np.float32)
    work = np.empty((1, _conv_winograd.workspace_size(4, 4, 8, max(tiles, 1), 2)), np.float32)
    with pytest.raises(ValueError, match=f"T must be a positive multiple of {SPAN}, got {tiles}"):
        _conv_winograd.conv2d_forward(x, u, np.zeros(4, np.float32), y, work,
                                      np.zeros(1, np.intc), tiles, 2, 2, 2, 1, 1)
