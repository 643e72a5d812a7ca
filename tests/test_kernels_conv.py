"""The compiled convolution kernels against the NumPy reference and hand-worked values.

Every test compares ``cyconv.kernels`` with ``cyconv.reference`` (vectorised version) or with
numbers worked out by hand, for every algorithm ("direct", "im2col", "blocked") and "auto".
Where "blocked" cannot run a pass (an input gradient with a stride, or with top/left padding
larger than dilation * (kernel - 1)) it must say so with a ValueError, and the tests check
that too.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cyconv import kernels as K
from cyconv import reference as R
from cyconv.geometry import conv2d_geometry
from cyconv.kernels import conv as conv_module

ALGORITHMS = ["direct", "im2col", "blocked"]
DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def assert_matches(actual, expected, dtype, terms=1):
    """``actual`` has ``expected``'s shape and dtype ``dtype`` and equals it within rounding.

    ``terms`` is the number of products summed into one value; the absolute tolerance grows
    with it and with the size of the values.
    """
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0))) * max(1.0, np.sqrt(terms))
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def assert_same_non_finite(actual, expected):
    """``actual`` has ``expected``'s NaNs and infs in the same places (there must be some),
    and its values elsewhere (float32 tolerance)."""
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(expected))
    finite = np.isfinite(expected)
    assert not finite.all()
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-4, atol=1e-4)


def record_calls(monkeypatch, module, name):
    """Replace module.name by a wrapper that records the dtype of its first argument in the
    returned list, then calls it."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: calls.append(args[0].dtype) or real(*args))
    return calls


@contextmanager
def im2col_band_bytes(nbytes):
    """Temporarily bound a thread's im2col columns (so images are cut into bands of rows)."""
    old = conv_module.BAND_BYTES
    conv_module.BAND_BYTES = nbytes
    try:
        yield
    finally:
        conv_module.BAND_BYTES = old


def random_problem(rng, input_shape, weight_shape, dtype, bias=True):
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal(weight_shape).astype(dtype)
    b = rng.standard_normal(weight_shape[0]).astype(dtype) if bias else None
    return x, w, b


def blocked_runs(geo, computing):
    """Whether the blocked kernels run this pass, worked out here (not by asking them)."""
    if computing != "grad_input":
        return True
    return (geo.stride == (1, 1) and geo.padding[0] <= geo.dilation[0] * (geo.kernel_h - 1)
            and geo.padding[2] <= geo.dilation[1] * (geo.kernel_w - 1))


@contextmanager
def refused_by_blocked(algorithm, geo, computing):
    """Run the block; if it asks "blocked" for a pass it cannot run, expect its ValueError."""
    assert (conv_module.blocked_unsupported(geo, computing) is None) == blocked_runs(geo, computing)
    if algorithm == "blocked" and not blocked_runs(geo, computing):
        with pytest.raises(ValueError, match=r"algorithm='blocked' needs stride 1 for the input "
                                             r"gradient|algorithm='blocked' needs padding"):
            yield False
    else:
        yield True


def check_all(x, w, b, algorithm, stride=1, padding=0, dilation=1, groups=1, rng=None):
    """Forward and the three gradients of the kernels against the reference; returns the output."""
    rng = rng or np.random.default_rng(0)
    dtype = x.dtype.type
    geo = conv2d_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    reduction = (geo.in_channels // groups) * geo.kernel_h * geo.kernel_w
    hyper = (stride, padding, dilation, groups)

    y = K.conv2d(x, w, b, *hyper, algorithm=algorithm)
    assert y.shape == geo.output_shape
    assert_matches(y, R.conv2d(x, w, b, *hyper), dtype, reduction)

    gy = rng.standard_normal(geo.output_shape).astype(dtype)
    with refused_by_blocked(algorithm, geo, "grad_input") as runs:
        gx = K.conv2d_grad_input(gy, w, x.shape, *hyper, algorithm=algorithm)
    if runs:
        assert_matches(gx, R.conv2d_grad_input(gy, w, x.shape, *hyper), dtype,
                       geo.out_channels * geo.kernel_h * geo.kernel_w)

    with refused_by_blocked(algorithm, geo, "grad_weight") as runs:
        gw = K.conv2d_grad_weight(gy, x, w.shape, *hyper, algorithm=algorithm)
    if runs:
        assert_matches(gw, R.conv2d_grad_weight(gy, x, w.shape, *hyper), dtype,
                       geo.batch * geo.out_h * geo.out_w)

    gb = K.conv2d_grad_bias(gy)
    assert_matches(gb, R.conv2d_grad_bias(gy), dtype, geo.batch * geo.out_h * geo.out_w)
    return y


# ---------------------------------------------------------------------------------------
# Random configurations (hypothesis)
# ---------------------------------------------------------------------------------------

@st.composite
def conv_configs(draw):
    """A valid convolution: sizes are drawn so that the kernel always fits the padded input."""
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.sampled_from(["valid", "same"])))
    if padding == "same":
        stride = draw(st.sampled_from([1, (1, 1)]))
        pad_total = (10, 10)                     # 'same' fits any input size
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
        pad = (0, 0) if padding == "valid" else (padding if isinstance(padding, tuple) else (padding,) * 2)
        pad_total = (2 * pad[0], 2 * pad[1])
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h = draw(st.integers(max(1, spans[0] - pad_total[0]), 10))
    w = draw(st.integers(max(1, spans[1] - pad_total[1]), 10))
    batch = draw(st.integers(1, 3))
    config = dict(input_shape=(batch, c_in, h, w), weight_shape=(c_out, c_in // groups) + kernel,
                  stride=stride, padding=padding, dilation=dilation, groups=groups)
    conv2d_geometry(**config)                    # raises if the strategy drew an invalid one
    return config


@given(config=conv_configs(), dtype=st.sampled_from(DTYPES),
       algorithm=st.sampled_from(["direct", "im2col", "blocked", "auto"]), bias=st.booleans(),
       workspace=st.sampled_from([None, 1, 600]), seed=st.integers(0, 2**32 - 1))
def test_random_configs_match_reference(config, dtype, algorithm, bias, workspace, seed):
    rng = np.random.default_rng(seed)
    x, w, b = random_problem(rng, config["input_shape"], config["weight_shape"], dtype, bias)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    if workspace is None:
        check_all(x, w, b, algorithm, rng=rng, **hyper)
    else:
        with im2col_band_bytes(workspace):
            check_all(x, w, b, algorithm, rng=rng, **hyper)


def draw_config(draw, groups, c_in_per_group, c_out_per_group, max_padding, max_stride,
                max_h, max_w):
    """A convolution of 1-3 images with kernels up to 4x4, dilation up to 2 and the given
    channels per group, bounds on padding, stride (h, w) and image size, as a dict of
    input_shape, weight_shape, stride, padding, dilation and groups."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding)))
    stride = (draw(st.integers(1, max_stride[0])), draw(st.integers(1, max_stride[1])))
    h = draw(st.integers(max(1, dilation[0] * (kernel[0] - 1) + 1 - 2 * padding[0]), max_h))
    w = draw(st.integers(max(1, dilation[1] * (kernel[1] - 1) + 1 - 2 * padding[1]), max_w))
    return dict(input_shape=(draw(st.integers(1, 3)), groups * c_in_per_group, h, w),
                weight_shape=(groups * c_out_per_group, c_in_per_group) + kernel,
                stride=stride, padding=padding, dilation=dilation, groups=groups)


@st.composite
def blocked_tile_configs(draw):
    """Convolutions sized across the blocked kernels' tile edges: 8 or 16 columns (the
    build's vector), 2, 3, 6 and 8 rows, blocks of 4 output channels (of the output, and of
    the input gradient, which is a convolution with C_in/groups outputs) and the channels
    left over; strides along the width (the row phases of the padded planes); padding of
    every size, asymmetric too."""
    return draw_config(draw, draw(st.integers(1, 3)), draw(st.integers(1, 9)),
                       draw(st.integers(1, 9)), 3, (2, 3), 19, 37)


@given(config=blocked_tile_configs(), dtype=st.sampled_from(DTYPES), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_blocked_across_tile_edges_matches_reference(config, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = random_problem(rng, config["input_shape"], config["weight_shape"], dtype, bias)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    check_all(x, w, b, "blocked", rng=rng, **hyper)


@pytest.mark.parametrize("out_h", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13])
@pytest.mark.parametrize("out_w", [7, 8, 9, 12, 15, 16, 17, 24, 25, 28, 40])
@pytest.mark.parametrize("c_out", [3, 4, 5, 8])
@pytest.mark.parametrize("stride_w", [1, 2, 3])
def test_blocked_tile_edges_grid(out_h, out_w, c_out, stride_w):
    """Every combination of rows, columns and channels around the tile sizes, not by chance:
    3x3 kernel, padding 1, 4 input channels (a whole block for the input gradient)."""
    rng = np.random.default_rng(out_h * 1000 + out_w * 10 + c_out)
    w_in = (out_w - 1) * stride_w + 1
    for dtype in DTYPES:
        x, w, b = random_problem(rng, (2, 4, out_h, w_in), (c_out, 4, 3, 3), dtype)
        y = check_all(x, w, b, "blocked", (1, stride_w), 1, 1, 1, rng)
        assert y.shape[2:] == (out_h, out_w)


@pytest.mark.parametrize("out_h", [23, 24, 25, 30, 48, 49])
@pytest.mark.parametrize("stride_h", [1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("c_out, out_w", [(5, 12), (8, 16), (1, 9)])
def test_blocked_forward_across_row_chunks(out_h, stride_h, dilation, c_out, out_w):
    """The blocked forward pass works through chunks of CHUNK_ROWS output rows, each padded
    on its own: outputs on both sides of a chunk's edge, a last chunk of 1 to 24 rows,
    strides and dilations that change the rows a chunk reads, with 4-channel blocks, the
    channels left over and the tail columns."""
    assert conv_module.CHUNK_ROWS == 24
    rng = np.random.default_rng(out_h * 100 + stride_h * 10 + dilation + c_out)
    h_in = (out_h - 1) * stride_h + 1
    for dtype in DTYPES:
        x, w, b = random_problem(rng, (2, 3, h_in, out_w), (c_out, 3, 3, 3), dtype)
        y = K.conv2d(x, w, b, (stride_h, 1), dilation, dilation, algorithm="blocked")
        assert y.shape[2:] == (out_h, out_w)
        assert_matches(y, R.conv2d(x, w, b, (stride_h, 1), dilation, dilation), dtype, 27)


@pytest.mark.parametrize("l1_bytes", [1, 2000])       # 1 channel a chunk, a few channels
@pytest.mark.parametrize("out_h, out_w", [(7, 9), (6, 16), (13, 28), (2, 5)])
@pytest.mark.parametrize("dilation, groups", [(1, 1), (2, 1), (1, 2)])
def test_blocked_forward_sums_the_channels_in_chunks(l1_bytes, out_h, out_w, dilation, groups,
                                                     monkeypatch):
    """Rows of tiles summed a chunk of input channels at a time, each chunk adding to the
    sums so far (tiles that stick out take all channels at once): the reference's values,
    with 4-channel blocks and channels left over, every tile height and width."""
    monkeypatch.setattr(conv_module, "BLOCKED_L1_BYTES", l1_bytes)
    rng = np.random.default_rng(out_h * 100 + out_w + dilation)
    pad = dilation
    for dtype in DTYPES:
        x, w, b = random_problem(rng, (2, 10, out_h, out_w), (18, 10 // groups, 3, 3), dtype)
        y = K.conv2d(x, w, b, 1, pad, dilation, groups, algorithm="blocked")
        assert_matches(y, R.conv2d(x, w, b, 1, pad, dilation, groups), dtype, 90)


def test_blocked_forward_chunks_of_channels_fit_the_l1_budget():
    """As few chunks as keep a chunk's rows within BLOCKED_L1_BYTES, of even sizes."""
    budget = conv_module.BLOCKED_L1_BYTES
    row_bytes = 8 * 66 * 4                                   # 6-row tile, 3x3, Wp = 66
    per_chunk = conv_module._chunk_taps(64, (3, 3), 66, 1, 1, 4) // 9
    assert per_chunk * row_bytes <= budget
    chunks = -(-64 // per_chunk)
    assert -(-64 // (chunks - 1)) * row_bytes > budget        # one chunk fewer would not fit
    # the 7x7 stride-2 stem: 17 rows of 230 values, 15.6 KB a channel: chunks of 2 and 1
    assert conv_module._chunk_taps(3, (7, 7), 230, 2, 1, 4) == 2 * 49
    assert conv_module._chunk_taps(3, (7, 7), 230, 2, 1, 4) // 49 * 17 * 230 * 4 <= budget


@pytest.mark.parametrize("c_out, groups", [(64, 1), (64, 4), (14, 2), (5, 1)])
def test_blocked_weight_packing_puts_each_blocks_4_channels_side_by_side(c_out, groups):
    """_conv_blocked.pack_blocks against its formula written with NumPy views:
    w_blocks[g, b, k, j] = w_matrix[g*out_g + 4*b + j, k], channels left over not packed."""
    rng = np.random.default_rng(c_out + groups)
    taps, out_g = 9 * 3, c_out // groups
    blocks = out_g // 4
    for dtype in DTYPES:
        w_matrix = rng.standard_normal((c_out, taps)).astype(dtype)
        packed = np.full((groups, blocks, taps, 4), np.nan, dtype)
        conv_module._conv_blocked.pack_blocks(w_matrix, packed)
        expected = (w_matrix.reshape(groups, out_g, taps)[:, :4 * blocks]
                    .reshape(groups, blocks, 4, taps).transpose(0, 1, 3, 2))
        np.testing.assert_array_equal(packed, expected)


@pytest.mark.parametrize("c_out, groups", [(64, 1), (20, 1), (66, 2), (3, 3)])
@pytest.mark.parametrize("taps", [7, 9 * 2, 9 * 16 + 5])
@pytest.mark.parametrize("vectors", [1, 2])
def test_weight_packing_in_blocks_of_vectors_pads_with_zero_filters(c_out, groups, taps, vectors):
    """The same packing in blocks of 1 or 2 vectors of channels (the tiles over output
    channels), 16 taps at a time through transposes and the taps left over one by one:
    w_blocks[g, b, k, j] = w_matrix[g*out_g + width*b + j, k], 0 past the group's channels."""
    rng = np.random.default_rng(c_out * 10 + groups + taps)
    out_g, width = c_out // groups, vectors * conv_module.TILE
    blocks = -(-out_g // width)
    for dtype in DTYPES:
        w_matrix = rng.standard_normal((c_out, taps)).astype(dtype)
        packed = np.full((groups, blocks, taps, width), np.nan, dtype)
        conv_module._conv_blocked.pack_blocks(w_matrix, packed)
        padded = np.zeros((groups, blocks * width, taps), dtype)
        padded[:, :out_g] = w_matrix.reshape(groups, out_g, taps)
        expected = padded.reshape(groups, blocks, width, taps).transpose(0, 1, 3, 2)
        np.testing.assert_array_equal(packed, expected)


@pytest.mark.parametrize("chunk", [1, 3, 5, 48])
@pytest.mark.parametrize("width, stride, dilation", [
    (conv_module.TILE + 5, 1, 1), (conv_module.TILE + conv_module.TILE // 2, 1, 1),
    (27, (2, 3), (2, 1))])
def test_blocked_forward_with_other_chunk_sizes(chunk, width, stride, dilation, monkeypatch):
    """Any chunk size gives the same numbers (one that is not a multiple of 24 only costs
    tile rows that stick out): the chunks are independent tasks, each padding its own rows.
    Widths with 5 and TILE/2 columns past the last whole tile (the second takes the 6-row
    tail tiles), strides and dilation; 4-channel blocks (groups=1) and channels left over."""
    monkeypatch.setattr(conv_module, "CHUNK_ROWS", chunk)
    rng = np.random.default_rng(chunk)
    x, w, b = random_problem(rng, (2, 6, 53, width), (6, 3, 3, 3), np.float64)
    for groups, weight in ((1, np.concatenate([w, w], axis=1)), (2, w)):
        y = K.conv2d(x, weight, b, stride, 1, dilation, groups, algorithm="blocked")
        assert_matches(y, R.conv2d(x, weight, b, stride, 1, dilation, groups), np.float64,
                       weight[0].size)


@st.composite
def by_channels_configs(draw):
    """Weight gradients across the tiles of conv2d_grad_weight_by_channels: output channels
    per group around its 1 or 2 vectors (8, 16 or 32 channels), taps (C_in/groups * kH *
    kW) around its tiles of 12; rows of odd and even length (the tiles of one vector take
    the positions two at a time); strides, dilations, padding and groups."""
    return draw_config(draw, draw(st.integers(1, 2)), draw(st.integers(1, 5)),
                       draw(st.sampled_from([1, 5, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 48])),
                       2, (3, 3), 12, 12)


@example(config=dict(input_shape=(1, 1, 1, 1), weight_shape=(1, 1, 1, 1), stride=(1, 1),
                     padding=(0, 0), dilation=(1, 1), groups=1),
          dtype=np.float32, threads=2, seed=0)  # a row of gy_t shorter than its cache lines
@given(config=by_channels_configs(), dtype=st.sampled_from(DTYPES), threads=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_blocked_weight_gradient_by_channels_matches_reference(config, dtype, threads, seed):
    """The weight gradient vectorised over output channels (called directly, whatever the
    build and dtype "auto" would use it for) against the reference."""
    rng = np.random.default_rng(seed)
    x, w, _ = random_problem(rng, config["input_shape"], config["weight_shape"], dtype)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    geo = conv2d_geometry(x.shape, w.shape, **hyper)
    gy = rng.standard_normal(geo.output_shape).astype(dtype)
    gw = conv_module._blocked_grad_weight_by_channels(gy, x, geo, threads)
    assert_matches(gw, R.conv2d_grad_weight(gy, x, w.shape, **hyper), dtype,
                   geo.batch * geo.out_h * geo.out_w)


@st.composite
def forward_by_channels_configs(draw):
    """Forward passes across the tiles of conv2d_forward_by_channels: output channels per
    group around its vectors (8, 16 or 32 channels), rows around its 14 or 28 positions
    (and the 16 of one transpose); strides (the stride phases of the padded rows),
    dilations, padding and groups."""
    return draw_config(draw, draw(st.integers(1, 2)), draw(st.integers(1, 5)),
                       draw(st.sampled_from([1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48])), 2,
                       (3, 3), 12, 60)


@given(config=forward_by_channels_configs(), dtype=st.sampled_from(DTYPES), bias=st.booleans(),
       tile=st.sampled_from(conv_module.CHANNEL_TILES), threads=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_blocked_forward_by_channels_matches_reference(config, dtype, bias, tile, threads,
                                                       seed):
    """The forward pass vectorised over output channels, in each of its register tiles
    (called directly, whatever the build and dtype "auto" would use it for), with chunks of
    rows of 1 to 24, against the reference."""
    rng = np.random.default_rng(seed)
    x, w, b = random_problem(rng, config["input_shape"], config["weight_shape"], dtype, bias)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    geo = conv2d_geometry(x.shape, w.shape, **hyper)
    chunk_rows = conv_module.CHUNK_ROWS
    conv_module.CHUNK_ROWS = seed % 24 + 1
    try:
        y = conv_module._blocked_conv_by_channels(x, w, b, np.empty(geo.output_shape, dtype),
                                                  geo.padding[0], geo.padding[2],
                                                  geo.stride, geo.dilation, geo.groups,
                                                  threads, tile)
    finally:
        conv_module.CHUNK_ROWS = chunk_rows
    assert_matches(y, R.conv2d(x, w, b, **hyper), dtype, w[0].size)


@pytest.mark.parametrize("tile", conv_module.CHANNEL_TILES)
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_blocked_forward_by_channels_keeps_the_references_non_finite_values(value, tile):
    """Its products are the formula's (the zero filters that pad its channel tiles, and the
    positions past the row, are dropped): infs and NaNs as in the reference."""
    rng = np.random.default_rng(12)
    x, w, b = random_problem(rng, (2, 3, 7, 14), (20, 3, 3, 3), np.float32)
    x[1, 2, 3, 13] = value
    y = conv_module._blocked_conv_by_channels(x, w, b, np.empty((2, 20, 7, 14), np.float32),
                                              1, 1, (1, 1), (1, 1), 1, 2, tile)
    assert_same_non_finite(y, R.conv2d(x, w, b, padding=1))


@pytest.mark.parametrize("out_g, width, expected", [
    (64, 28, (2, 14)), (64, 14, (2, 14)), (32, 56, (2, 14)), (24, 28, (2, 14)),
    (64, 12, (2, 14)),                     # 12 of 14
    (64, 8, (2, 8)), (64, 7, (2, 8)), (32, 16, (2, 8)), (64, 32, (2, 8)),   # short rows
    (16, 28, (1, 28)), (12, 56, (1, 28)), (16, 24, (1, 28)),   # groups of one vector
    (16, 14, None),             # half of either tile
    (64, 11, None),             # 11 of 14, of 16
    (8, 28, None),              # half a vector
])
def test_forward_channel_tile_rule(out_g, width, expected, monkeypatch):
    monkeypatch.setattr(conv_module, "TILE", 16)
    assert conv_module.forward_channel_tile(out_g, width, np.float32) == expected
    assert conv_module.forward_channel_tile(out_g, width, np.float64) is None
    monkeypatch.setattr(conv_module, "TILE", 8)
    assert conv_module.forward_channel_tile(out_g, width, np.float32) is None


def test_by_channels_takes_only_its_tiles():
    x, w, b = random_problem(np.random.default_rng(3), (1, 2, 5, 5), (4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"tile must be one of .*\(2, 14\).*got \(2, 7\)"):
        conv_module._blocked_conv_by_channels(x, w, b, np.empty((1, 4, 3, 3), np.float32), 0,
                                              0, (1, 1), (1, 1), 1, 1, (2, 7))


def test_blocked_runs_the_forward_pass_by_channels_where_the_rule_says(monkeypatch):
    """The forward pass and the input gradient (a forward convolution with C_in/groups
    output channels) of a dilated 32-channel convolution on rows of 14, and the forward
    passes of a 7x7 stride-2 stem on rows of 28, of a grouped convolution and of rows of
    8."""
    tiles, real = [], conv_module._conv_blocked.conv2d_forward_by_channels
    monkeypatch.setattr(conv_module._conv_blocked, "conv2d_forward_by_channels",    # (channels,
                        lambda *args: tiles.append((args[1].shape[3], args[6])) or real(*args))
                                                                                  # positions)
    rng = np.random.default_rng(13)
    x, w, b = random_problem(rng, (2, 32, 14, 14), (32, 32, 3, 3), np.float32)
    y = K.conv2d(x, w, b, 1, 2, 2)
    assert_matches(y, R.conv2d(x, w, b, 1, 2, 2), np.float32, 288)
    gx = K.conv2d_grad_input(y, w, x.shape, 1, 2, 2)
    assert_matches(gx, R.conv2d_grad_input(y, w, x.shape, 1, 2, 2), np.float32, 288)
    x, w, b = random_problem(rng, (2, 3, 56, 56), (32, 3, 7, 7), np.float32)
    y = K.conv2d(x, w, b, 2, 3)
    assert y.shape == (2, 32, 28, 28)
    assert_matches(y, R.conv2d(x, w, b, 2, 3), np.float32, 147)
    x, w, b = random_problem(rng, (2, 64, 28, 28), (64, 16, 3, 3), np.float32)
    y = K.conv2d(x, w, b, 1, 1, 1, 4)                  # groups of 16 channels: 1 vector
    assert_matches(y, R.conv2d(x, w, b, 1, 1, 1, 4), np.float32, 144)
    x, w, b = random_problem(rng, (2, 64, 8, 8), (64, 64, 3, 3), np.float32)
    y = K.conv2d(x, w, b, 1, 1)                        # rows of 8
    assert_matches(y, R.conv2d(x, w, b, 1, 1), np.float32, 576)
    assert tiles == ([(32, 14)] * 3 + [(16, 28), (32, 8)] if conv_module.TILE == 16 else [])


@pytest.mark.parametrize("out_channels", [20, 12])     # tiles of 2 vectors, of 1
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_blocked_weight_gradient_by_channels_keeps_the_references_non_finite_values(
        value, out_channels):
    """Every product it sums is one of the formula's (the channels and taps that pad its
    tiles are dropped): an inf or a NaN in the input gives the reference's pattern."""
    rng = np.random.default_rng(10)
    x, w, _ = random_problem(rng, (2, 4, 6, 7), (out_channels, 4, 3, 3), np.float32)
    x[0, 1, 2, 5] = value
    geo = conv2d_geometry(x.shape, w.shape, 1, 0, 1, 1)
    gy = rng.standard_normal(geo.output_shape).astype(np.float32)
    gw = conv_module._blocked_grad_weight_by_channels(gy, x, geo, 2)
    assert_same_non_finite(gw, R.conv2d_grad_weight(gy, x, w.shape))


@pytest.mark.parametrize("out_g, cg, kernel, width, expected", [
    (64, 64, 3, 16, True), (48, 8, 3, 16, True), (32, 4, 3, 16, True),
    (16, 64, 3, 16, True), (12, 16, 3, 28, True),       # one vector
    (20, 64, 3, 16, False),   # 5/8 of 2 vectors of 16 channels, ...
    (20, 64, 3, 8, True),     # ... but output rows of 8 fill half of the column tiles too
    (8, 64, 3, 8, False),     # half a vector of channels
    (64, 1, 5, 16, False),    # 25 taps of 36
    (64, 3, 7, 16, True),     # 147 taps of 156
])
def test_grad_weight_by_channels_rule(out_g, cg, kernel, width, expected, monkeypatch):
    monkeypatch.setattr(conv_module, "TILE", 16)
    geo = conv2d_geometry((2, cg, 10, width + kernel - 1), (out_g, cg, kernel, kernel), 1, 0,
                          1, 1)
    assert geo.out_w == width
    assert conv_module.grad_weight_by_channels(geo) is expected
    assert conv_module.grad_weight_by_channels(geo, np.float64) is False    # not in float64
    monkeypatch.setattr(conv_module, "TILE", 8)          # not with AVX vectors of 8
    assert conv_module.grad_weight_by_channels(geo) is False


def test_auto_leaves_float64_weight_gradients_with_many_channels_to_im2col(monkeypatch):
    """In float64 the weight gradient over output channels lost to im2col (and the column
    tiles do not take more than 32 output channels a group)."""
    monkeypatch.setattr(conv_module, "TILE", 16)
    geo = conv2d_geometry((4, 64, 16, 16), (128, 64, 3, 3), 1, 1, 1, 1)
    assert K.choose_algorithm(geo, "grad_weight") == "blocked"
    assert K.choose_algorithm(geo, "grad_weight", np.float64) == "im2col"


def test_auto_runs_the_weight_gradient_by_channels_where_the_rule_says(monkeypatch):
    calls = record_calls(monkeypatch, conv_module._conv_blocked,
                         "conv2d_grad_weight_by_channels")
    rng = np.random.default_rng(11)
    x, w, _ = random_problem(rng, (2, 8, 9, 9), (32, 8, 3, 3), np.float32)
    geo = conv2d_geometry(x.shape, w.shape, 1, 1, 1, 1)
    gy = rng.standard_normal(geo.output_shape).astype(np.float32)
    for dtype in DTYPES:
        gw = K.conv2d_grad_weight(gy.astype(dtype), x.astype(dtype), w.shape, padding=1)
        assert_matches(gw, R.conv2d_grad_weight(gy.astype(dtype), x.astype(dtype), w.shape,
                                                padding=1), dtype, 162)
    assert K.choose_algorithm(geo, "grad_weight") == (
        "blocked" if conv_module.TILE == 16 else "im2col")
    assert K.choose_algorithm(geo, "grad_weight", np.float64) == "im2col"
    assert calls == ([np.float32] if conv_module.TILE == 16 else [])


@pytest.mark.parametrize("algorithm", ["blocked", "winograd", "auto"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_input_gradient_with_a_non_finite_weight_keeps_the_references_values(algorithm, value):
    """The blocked and Winograd input gradients convolve the zero-padded output gradient
    with the flipped weight; 0 * inf would put NaNs where the formula has no product (the
    border: hand-worked, a 3x3 grad of ones and a weight of ones with w[0, 0, 0, 0] = inf
    give [[inf, inf, 4], [inf, inf, 6], [4, 6, 4]]). A non-finite weight goes to im2col."""
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, 0] = value
    gx = K.conv2d_grad_input(np.ones((1, 1, 3, 3)), w, (1, 1, 3, 3), padding=1,
                             algorithm=algorithm)
    expected = R.conv2d_grad_input(np.ones((1, 1, 3, 3)), w, (1, 1, 3, 3), padding=1)
    np.testing.assert_array_equal(gx, expected)
    if value == np.inf:
        np.testing.assert_array_equal(expected[0, 0], [[np.inf, np.inf, 4], [np.inf, np.inf, 6],
                                                       [4, 6, 4]])


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_blocked_weight_gradient_keeps_the_references_non_finite_values(value):
    """An inf or NaN in an input column only the last tile's stick-out lanes read under tap
    q = 0 (7 columns, 3x3 kernel, 5 outputs: column 5 is read by taps 1 and 2 only) must not
    turn that tap's gradient into NaN: the result has the reference's inf/NaN pattern."""
    rng = np.random.default_rng(9)
    x, w, _ = random_problem(rng, (2, 4, 6, 7), (4, 4, 3, 3), np.float32)
    x[0, 1, 2, 5] = value
    gy = rng.standard_normal((2, 4, 4, 5)).astype(np.float32)
    expected = R.conv2d_grad_weight(gy, x, w.shape)
    for algorithm in ("blocked", "auto"):
        gw = K.conv2d_grad_weight(gy, x, w.shape, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(gw), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(gw), np.isinf(expected))
        finite = np.isfinite(expected)
        assert finite[:, :, :, 0].all()             # tap q = 0 never multiplies column 5
        np.testing.assert_allclose(gw[finite], expected[finite], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Edge cases, every algorithm
# ---------------------------------------------------------------------------------------

# (input_shape, weight_shape, stride, padding, dilation, groups, expected output (H, W))
EDGE_CASES = {
    "1x1 input, 1x1 kernel": ((2, 3, 1, 1), (4, 3, 1, 1), 1, 0, 1, 1, (1, 1)),
    "kernel as large as the padded input": ((2, 2, 3, 4), (3, 2, 5, 6), 1, 1, 1, 1, (1, 1)),
    "kernel = input, no padding": ((1, 2, 4, 3), (2, 2, 4, 3), 1, 0, 1, 1, (1, 1)),
    "stride larger than kernel": ((2, 2, 9, 8), (3, 2, 2, 2), 3, 0, 1, 1, (3, 3)),
    "stride larger than padded input": ((1, 2, 3, 3), (2, 2, 2, 2), 5, 1, 1, 1, (1, 1)),
    "large dilation, span = input": ((2, 2, 9, 9), (2, 2, 3, 3), 1, 0, 4, 1, (1, 1)),
    "large dilation with padding": ((1, 2, 6, 7), (2, 2, 3, 3), 1, 2, 3, 1, (4, 5)),
    "depthwise": ((2, 3, 6, 5), (3, 1, 3, 3), 1, 1, 1, 3, (6, 5)),
    "depthwise, channel multiplier 2": ((2, 3, 6, 5), (6, 1, 3, 3), 2, 1, 1, 3, (3, 3)),
    "asymmetric everything": ((2, 2, 7, 5), (3, 2, 3, 2), (2, 1), (1, 0), (1, 2), 1, (4, 3)),
    "same, even kernel, dilation 2": ((2, 2, 7, 6), (3, 2, 4, 2), 1, "same", 2, 1, (7, 6)),
    "same, even kernels, no dilation": ((1, 2, 5, 4), (2, 2, 2, 4), 1, "same", 1, 1, (5, 4)),
    "same, asymmetric dilation": ((1, 2, 5, 8), (2, 2, 3, 4), 1, "same", (2, 3), 1, (5, 8)),
    "valid": ((1, 2, 5, 6), (2, 2, 3, 2), 1, "valid", 1, 1, (3, 5)),
    "groups 2, wider channels": ((1, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2, (5, 5)),
    "one row": ((2, 1, 1, 9), (2, 1, 1, 3), (1, 2), 0, 1, 1, (1, 4)),
    "padding larger than kernel": ((1, 1, 2, 2), (1, 1, 1, 1), 1, 2, 1, 1, (6, 6)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", list(EDGE_CASES), ids=list(EDGE_CASES))
def test_edge_cases(case, algorithm, dtype):
    input_shape, weight_shape, stride, padding, dilation, groups, out_hw = EDGE_CASES[case]
    rng = np.random.default_rng(1)
    x, w, b = random_problem(rng, input_shape, weight_shape, dtype)
    y = check_all(x, w, b, algorithm, stride, padding, dilation, groups, rng)
    assert y.shape[2:] == out_hw


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_padding_keeps_size_and_puts_the_extra_row_at_the_bottom(algorithm):
    # kernel (2, 2) with 'same': total padding 1 per dimension, all of it at the bottom/right,
    # so output (i, j) = x[i, j] + x[i, j+1] + x[i+1, j] + x[i+1, j+1] (zero past the edge).
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = K.conv2d(x, w, padding="same", algorithm=algorithm)
    np.testing.assert_array_equal(y[0, 0], [[12, 16, 9], [24, 28, 15], [15, 17, 9]])


@pytest.mark.parametrize("out_rows, band_limit, expected", [(7, 2, (1, 2)), (7, 3, (1, 3)),
                                                          (5, 100, (2, 5))])
def test_im2col_blocks(out_rows, band_limit, expected, monkeypatch):
    """Large images are cut into bands of rows; small ones go several to a block."""
    rng = np.random.default_rng(2)
    x, w, b = random_problem(rng, (4, 3, out_rows + 2, 5), (4, 3, 3, 2), np.float64)
    geo = conv2d_geometry(x.shape, w.shape, 1, 0, 1, 1)
    row_bytes = 3 * 3 * 2 * geo.out_w * 8
    monkeypatch.setattr(conv_module, "BAND_BYTES", band_limit * row_bytes)
    assert conv_module.im2col_blocks(geo, 8, threads=1) == expected   # last block may be smaller
    check_all(x, w, b, "im2col", 1, 0, 1, 1, rng)


@pytest.mark.parametrize("batch, expected", [(1, (1, 3)), (2, (1, 5)), (8, (2, 10))])
def test_im2col_blocks_give_every_thread_work(batch, expected):
    """Small batches are cut into more blocks: at least two per thread."""
    geo = conv2d_geometry((batch, 2, 10, 10), (2, 2, 3, 3), 1, 1, 1, 1)  # 10x10 outputs
    assert conv_module.im2col_blocks(geo, 8, threads=2) == expected
    assert conv_module.im2col_blocks(geo, 8, threads=2, whole_images=True)[1] == 10


@pytest.mark.parametrize("groups", [1, 2])
def test_im2col_one_row_per_band_when_workspace_too_small(groups, monkeypatch):
    rng = np.random.default_rng(3)
    monkeypatch.setattr(conv_module, "BAND_BYTES", 1)
    x, w, b = random_problem(rng, (3, 4, 5, 5), (6, 4 // groups, 2, 3), np.float32)
    geo = conv2d_geometry(x.shape, w.shape, 1, (1, 0), 2, groups)
    assert conv_module.im2col_blocks(geo, 4, threads=2) == (1, 1)
    check_all(x, w, b, "im2col", 1, (1, 0), 2, groups, rng)


@pytest.mark.parametrize("groups", [1, 2])
def test_im2col_several_images_per_block(groups, monkeypatch):
    rng = np.random.default_rng(4)
    x, w, b = random_problem(rng, (7, 4, 6, 5), (6, 4 // groups, 3, 3), np.float64)
    geo = conv2d_geometry(x.shape, w.shape, 1, 1, 1, groups)
    images, band = conv_module.im2col_blocks(geo, 8, threads=1)
    assert images > 1 and band == geo.out_h and 7 % images != 0     # a shorter last block
    check_all(x, w, b, "im2col", 1, 1, 1, groups, rng)


def _non_contiguous_views(x):
    """The same values as ``x`` in differently laid out arrays (none C-contiguous)."""
    transposed = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    reversed_ = np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1]
    fortran = np.asfortranarray(x)
    strided = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    strided[..., ::2] = x
    strided = strided[..., ::2]
    return {"transposed": transposed, "reversed": reversed_, "fortran": fortran,
            "strided": strided}


@pytest.mark.parametrize("layout", ["transposed", "reversed", "fortran", "strided"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_contiguous_arrays(layout, algorithm):
    rng = np.random.default_rng(4)
    x, w, b = random_problem(rng, (2, 3, 5, 6), (4, 3, 3, 2), np.float64)
    gy = rng.standard_normal((2, 4, 5, 7))
    xv, wv, gyv = (_non_contiguous_views(a)[layout] for a in (x, w, gy))
    bv = np.repeat(b, 2)[::2]
    for array, view in ((x, xv), (w, wv), (gy, gyv), (b, bv)):
        assert not view.flags.c_contiguous and np.array_equal(array, view)
    hyper = ((1, 1), 1, 1, 1)

    y = K.conv2d(xv, wv, bv, *hyper, algorithm=algorithm)
    assert_matches(y, R.conv2d(x, w, b, *hyper), np.float64, 18)
    np.testing.assert_array_equal(y, K.conv2d(x, w, b, *hyper, algorithm=algorithm))

    gx = K.conv2d_grad_input(gyv, wv, x.shape, *hyper, algorithm=algorithm)
    assert_matches(gx, R.conv2d_grad_input(gy, w, x.shape, *hyper), np.float64, 24)
    np.testing.assert_array_equal(gx, K.conv2d_grad_input(gy, w, x.shape, *hyper, algorithm=algorithm))

    gw = K.conv2d_grad_weight(gyv, xv, w.shape, *hyper, algorithm=algorithm)
    assert_matches(gw, R.conv2d_grad_weight(gy, x, w.shape, *hyper), np.float64, 50)

    assert_matches(K.conv2d_grad_bias(gyv), R.conv2d_grad_bias(gy), np.float64, 50)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_read_only_inputs_are_accepted_and_not_modified(algorithm):
    rng = np.random.default_rng(5)
    x, w, b = random_problem(rng, (1, 2, 4, 4), (2, 2, 3, 3), np.float64)
    gy = rng.standard_normal((1, 2, 4, 4))
    copies = [a.copy() for a in (x, w, b, gy)]
    for a in (x, w, b, gy):
        a.flags.writeable = False
    assert_matches(K.conv2d(x, w, b, 1, 1, algorithm=algorithm), R.conv2d(x, w, b, 1, 1),
                   np.float64, 18)
    assert_matches(K.conv2d_grad_input(gy, w, x.shape, 1, 1, algorithm=algorithm),
                   R.conv2d_grad_input(gy, w, x.shape, 1, 1), np.float64, 18)
    assert_matches(K.conv2d_grad_weight(gy, x, w.shape, 1, 1, algorithm=algorithm),
                   R.conv2d_grad_weight(gy, x, w.shape, 1, 1), np.float64, 16)
    for array, copy in zip((x, w, b, gy), copies):
        np.testing.assert_array_equal(array, copy)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nan_and_inf_in_the_input_reach_exactly_the_outputs_that_read_them(algorithm):
    rng = np.random.default_rng(7)
    x, w, b = random_problem(rng, (2, 2, 7, 6), (3, 2, 3, 2), np.float64)
    x[0, 1, 0, 0] = np.nan
    x[1, 0, 4, 3] = np.inf
    hyper = ((2, 1), 1, (1, 2), 1)
    y = K.conv2d(x, w, b, *hyper, algorithm=algorithm)
    y_ref = R.conv2d(x, w, b, *hyper)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(y_ref))
    assert np.isnan(y[0]).any() and not np.isnan(y[1]).any()
    finite = np.isfinite(y_ref)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(y[finite], y_ref[finite], rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------
# Hand-worked values
# ---------------------------------------------------------------------------------------

IMAGE = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)       # [[1 2 3] [4 5 6] [7 8 9]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS + ["auto"])
def test_hand_worked_2x2_ones(algorithm, dtype):
    x = IMAGE.astype(dtype)
    w = np.ones((1, 1, 2, 2), dtype)
    y = K.conv2d(x, w, algorithm=algorithm)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[[[12, 16], [24, 28]]]])
    # with bias 0.5
    y = K.conv2d(x, w, np.array([0.5], dtype), algorithm=algorithm)
    np.testing.assert_array_equal(y, [[[[12.5, 16.5], [24.5, 28.5]]]])
    # each input cell is read by as many windows as cover it
    gy = np.ones((1, 1, 2, 2), dtype)
    gx = K.conv2d_grad_input(gy, w, x.shape, algorithm=algorithm)
    np.testing.assert_array_equal(gx, [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]])
    # tap (p, q) sees the 2x2 block starting at (p, q)
    gw = K.conv2d_grad_weight(gy, x, w.shape, algorithm=algorithm)
    np.testing.assert_array_equal(gw, [[[[12, 16], [24, 28]]]])
    np.testing.assert_array_equal(K.conv2d_grad_bias(gy), [4])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hand_worked_stride_padding_dilation(algorithm):
    ones3 = np.ones((1, 1, 3, 3))
    # 3x3 ones, stride 2, padding 1: the four corners of the padded image
    y = K.conv2d(IMAGE, ones3, stride=2, padding=1, algorithm=algorithm)
    np.testing.assert_array_equal(y, [[[[12, 16], [24, 28]]]])
    if algorithm == "blocked":      # its input gradient needs stride 1, and it says so
        with pytest.raises(ValueError, match=r"'blocked' needs stride 1 for the input gradient "
                                             r"\(got stride \(2, 2\)\); use 'auto'"):
            K.conv2d_grad_input(y, ones3, IMAGE.shape, stride=2, padding=1, algorithm=algorithm)
    # 2x2 kernel with dilation 2 reads the four corners of the image
    y = K.conv2d(IMAGE, np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), dilation=2,
                 algorithm=algorithm)
    np.testing.assert_array_equal(y, [[[[1 + 30 + 700 + 9000]]]])
    # cross-correlation, not convolution: the kernel is not flipped
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 0, 0] = 1.0
    y = K.conv2d(IMAGE, w, padding=1, algorithm=algorithm)
    np.testing.assert_array_equal(y, [[[[0, 0, 0], [0, 1, 2], [0, 4, 5]]]])
    # stride (2, 1) and 1x2 kernel [1, -1]: differences along rows 0 and 2
    y = K.conv2d(IMAGE, np.array([[[[1.0, -1.0]]]]), stride=(2, 1), algorithm=algorithm)
    np.testing.assert_array_equal(y, [[[[-1, -1], [-1, -1]]]])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hand_worked_groups(algorithm):
    # channel 0 all ones, channel 1 all twos; groups=2 keeps them apart
    x = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))])[None]
    w = np.array([3.0, 5.0, 7.0]).reshape(3, 1, 1, 1)[[0, 0, 1, 2]]   # (4, 1, 1, 1): 3, 3, 5, 7
    y = K.conv2d(x, w, np.array([0.0, 1.0, 0.0, 1.0]), groups=2, algorithm=algorithm)
    # output channels 0, 1 read input channel 0; 2, 3 read channel 1
    np.testing.assert_array_equal(y[0, :, 0, 0], [3, 4, 10, 15])
    gx = K.conv2d_grad_input(np.ones((1, 4, 2, 2)), w, x.shape, groups=2, algorithm=algorithm)
    np.testing.assert_array_equal(gx[0, :, 0, 0], [6, 12])
    gw = K.conv2d_grad_weight(np.ones((1, 4, 2, 2)), x, w.shape, groups=2, algorithm=algorithm)
    np.testing.assert_array_equal(gw.ravel(), [4, 4, 8, 8])


# ---------------------------------------------------------------------------------------
# algorithm="auto"
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("input_shape, weight_shape, stride, groups, computing, expected", [
    # the blocked kernels run every forward pass
    ((1, 64, 8, 8), (64, 64, 3, 3), 1, 1, "output", "blocked"),
    ((1, 8, 8, 8), (8, 1, 3, 3), (2, 1), 8, "output", "blocked"),
    ((1, 8, 9, 9), (8, 1, 3, 3), 2, 8, "output", "blocked"),
    # ... and the input gradient when C_in/groups is below 4 or a multiple of 4, no dilation
    ((1, 8, 8, 8), (8, 1, 3, 3), 1, 8, "grad_input", "blocked"),      # 1
    ((1, 4, 8, 8), (28, 4, 3, 3), 1, 1, "grad_input", "blocked"),     # 4
    ((1, 6, 8, 8), (16, 6, 3, 3), 1, 1, "grad_input", "im2col"),      # 6
    # ... and the weight gradient with at most 32 output channels a group
    ((1, 8, 16, 16), (8, 1, 3, 3), 1, 8, "grad_weight", "blocked"),   # 1 channel
    ((1, 8, 9, 9), (8, 1, 3, 3), (1, 2), 8, "grad_weight", "blocked"),
    ((1, 4, 16, 16), (32, 4, 3, 3), 1, 1, "grad_weight", "blocked"),  # 32 channels
    ((1, 4, 18, 18), (33, 4, 3, 3), 1, 1, "grad_weight",              # 33 channels (with
     "blocked" if conv_module.TILE == 16 else "im2col"),              # AVX-512: by channels)
    # ... where the output rows fill at least 3/4 of the vectors' lanes (with AVX-512,
    # over output channels where they do not)
    ((1, 4, 10, 10), (16, 4, 5, 5), 1, 1, "grad_weight", "blocked"),  # 8 of TILE columns
    ((1, 1, 10, 10), (16, 1, 5, 5), 1, 1, "grad_weight",              # ... 25 taps of 36
     "blocked" if conv_module.TILE == 8 else "im2col"),
    ((1, 4, 24, 24), (16, 4, 3, 3), 1, 1, "grad_weight", "blocked"),  # 24 of 24 or 32
    # where blocked cannot (or should not) run: direct below 16 multiply-adds per output,
    # im2col above
    ((1, 8, 9, 9), (8, 1, 3, 3), 2, 8, "grad_input", "direct"),        # stride 2
    ((1, 8, 9, 9), (8, 2, 3, 3), (2, 1), 4, "grad_input", "im2col"),   # 18
])
def test_choose_algorithm(input_shape, weight_shape, stride, groups, computing, expected,
                          monkeypatch):
    # the rule is tested with the bounds it was written for; retuning them means new cases
    monkeypatch.setattr(conv_module, "DIRECT_MAX_REDUCTION", 16)
    monkeypatch.setattr(conv_module, "BLOCKED_MAX_GRAD_WEIGHT_CHANNELS", 32)
    geo = conv2d_geometry(input_shape, weight_shape, stride, 1, 1, groups)
    assert K.choose_algorithm(geo, computing) == expected

    # "auto" runs the chosen algorithm: spy on every entry point
    calls = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return wrapper

    entry = {"output": "conv2d_forward", "grad_input": "conv2d_grad_input",
             "grad_weight": "conv2d_grad_weight"}[computing]
    for name, module in (("direct", conv_module._conv_direct), ("im2col", conv_module._im2col),
                         ("blocked", conv_module._conv_blocked)):
        # the blocked input gradient is a forward convolution of the output gradient
        blocked_entry = "conv2d_forward" if computing == "grad_input" else entry
        attribute = blocked_entry if name == "blocked" else entry
        monkeypatch.setattr(module, attribute, spy(name, getattr(module, attribute)))
    # ... or runs over output channels
    by_channels = ("conv2d_grad_weight_by_channels" if computing == "grad_weight"
                   else "conv2d_forward_by_channels")
    monkeypatch.setattr(conv_module._conv_blocked, by_channels,
                        spy("blocked", getattr(conv_module._conv_blocked, by_channels)))
    # ... or, depthwise with stride 1, plane by plane
    for depthwise in ("conv2d_forward_depthwise", "conv2d_grad_weight_depthwise"):
        monkeypatch.setattr(conv_module._conv_blocked, depthwise,
                            spy("blocked", getattr(conv_module._conv_blocked, depthwise)))
    rng = np.random.default_rng(6)
    x, w, b = random_problem(rng, input_shape, weight_shape, np.float32)   # "auto"'s dtype
    gy = rng.standard_normal(geo.output_shape).astype(np.float32)
    hyper = (stride, 1, 1, groups)
    if computing == "output":
        result, expected_value = K.conv2d(x, w, b, *hyper), R.conv2d(x, w, b, *hyper)
    elif computing == "grad_input":
        result = K.conv2d_grad_input(gy, w, x.shape, *hyper)
        expected_value = R.conv2d_grad_input(gy, w, x.shape, *hyper)
    else:
        result = K.conv2d_grad_weight(gy, x, w.shape, *hyper)
        expected_value = R.conv2d_grad_weight(gy, x, w.shape, *hyper)
    assert set(calls) == {expected}
    assert_matches(result, expected_value, np.float32, 600)


def test_choose_algorithm_dilated_input_gradient_goes_to_im2col_with_vectors_of_8():
    """Measured: with AVX-512 (vectors of 16) the blocked input gradient wins dilated
    convolutions too, with AVX's vectors of 8 im2col did."""
    geo = conv2d_geometry((1, 8, 12, 12), (8, 8, 3, 3), 1, 2, 2, 1)
    assert [K.choose_algorithm(geo, c) for c in ("output", "grad_input", "grad_weight")] == \
        ["blocked", "blocked" if conv_module.TILE == 16 else "im2col", "blocked"]


def test_choose_algorithm_rejects_an_unknown_pass():
    geo = conv2d_geometry((1, 1, 4, 4), (1, 1, 3, 3), 1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"computing must be one of .*'output'.*got 'backward'"):
        K.choose_algorithm(geo, "backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_dtype_follows_input(dtype):
    x = np.ones((1, 2, 3, 3), dtype)
    w = np.ones((2, 2, 2, 2), dtype)
    for algorithm in ALGORITHMS + ["auto"]:
        assert K.conv2d(x, w, algorithm=algorithm).dtype == dtype
        gy = np.ones((1, 2, 2, 2), dtype)
        assert K.conv2d_grad_input(gy, w, x.shape, algorithm=algorithm).dtype == dtype
        assert K.conv2d_grad_weight(gy, x, w.shape, algorithm=algorithm).dtype == dtype
    assert K.conv2d_grad_bias(np.ones((1, 2, 2, 2), dtype)).dtype == dtype


def test_grad_bias_hand_worked():
    gy = np.arange(24.0).reshape(2, 3, 2, 2)
    # channel c holds 4c..4c+3 in image 0 and 12+4c..12+4c+3 in image 1
    expected = [sum(range(4 * c, 4 * c + 4)) + sum(range(12 + 4 * c, 16 + 4 * c)) for c in range(3)]
    np.testing.assert_array_equal(K.conv2d_grad_bias(gy), expected)
    np.testing.assert_array_equal(K.conv2d_grad_bias(gy.astype(np.float32)), expected)


def test_forward_by_channels_kernel_checks_its_tile():
    """The kernel itself refuses positions that do not go with its weight blocks' width (a
    tile stores exactly its own accumulators; another pair would read and write astray)."""
    x = np.ones((1, 1, 1, 16), np.float32)
    tile = conv_module.TILE
    w_t = np.zeros((1, 1, 1, 2 * tile), np.float32)
    with pytest.raises(ValueError, match=r"positions and w_t.shape\[3\] must be .*got \(16, "):
        conv_module._conv_blocked.conv2d_forward_by_channels(
            x, w_t, np.zeros((1, 2 * tile), np.float32), np.zeros(1, np.intp),
            np.empty((1, 2 * tile, 1, 16), np.float32), np.zeros((1, 64), np.float32), 16,
            24, 1, 16, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match=r"got \(28, " + str(2 * tile) + r"\)"):
        conv_module._conv_blocked.conv2d_forward_by_channels(
            x, w_t, np.zeros((1, 2 * tile), np.float32), np.zeros(1, np.intp),
            np.empty((1, 2 * tile, 1, 16), np.float32), np.zeros((1, 64), np.float32), 28,
            24, 1, 16, 1, 1, 0, 0, 1, 1)


def test_workspace_rows_start_on_cache_lines_and_are_reused(monkeypatch):
    """_workspace: (threads, row) with row >= size, each row on a cache line of its own;
    the same call gives the same array again, a larger one a new buffer (and the views of
    the old one are dropped, so it can be freed)."""
    monkeypatch.setattr(conv_module, "_local", threading.local())
    first = conv_module._workspace("test", 2, 10, np.float32)
    assert first.shape == (2, 16)
    for t in range(2):
        assert first[t].ctypes.data % conv_module.CACHE_LINE == 0
    assert conv_module._workspace("test", 2, 10, np.float32) is first
    assert np.shares_memory(conv_module._workspace("test", 1, 20, np.float32), first)
    larger = conv_module._workspace("test", 2, 100, np.float32)
    assert larger.shape == (2, 112) and not np.shares_memory(larger, first)
    views = conv_module._local.views
    assert all(np.shares_memory(view, larger) for key, view in views.items()
               if key[:2] == ("test", np.dtype(np.float32)))
    assert conv_module._workspace("test", 2, 10, np.float64).shape == (2, 16)


@st.composite
def depthwise_configs(draw):
    """Depthwise convolutions with stride 1 (groups = channels, one filter each): kernels of
    1 to 5, dilation 1 to 3, padding from none to more than the kernel, asymmetric too, and
    rows shorter and longer than the tiles' 4 rows x 2 vectors."""
    channels = draw(st.integers(1, 6))
    k = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.integers(0, 4), st.tuples(st.integers(0, 4), st.integers(0, 4))))
    pad = padding if isinstance(padding, tuple) else (padding, padding)
    reach = dilation * (k - 1) + 1
    h = draw(st.integers(max(1, reach - 2 * pad[0]), 40))
    w = draw(st.integers(max(1, reach - 2 * pad[1]), 70))
    return dict(input_shape=(draw(st.integers(1, 3)), channels, h, w),
                weight_shape=(channels, 1, k, k), stride=1, padding=padding,
                dilation=dilation, groups=channels)


@given(config=depthwise_configs(), dtype=st.sampled_from(DTYPES), threads=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_depthwise_forward_and_input_gradient_match_reference(config, dtype, threads, seed):
    """The blocked path's depthwise kernel (conv2d_forward_depthwise: the forward pass, and
    the input gradient, a depthwise convolution with the flipped filters) against the
    reference, on rows of any width (the rule that keeps it to narrow rows is lifted)."""
    rng = np.random.default_rng(seed)
    x, w, b = random_problem(rng, config["input_shape"], config["weight_shape"], dtype)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    geo = conv2d_geometry(x.shape, w.shape, **hyper)
    old = K.get_num_threads()
    K.set_num_threads(threads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_module, "DEPTHWISE_MAX_WIDTH", 10**9)
        try:
            y = K.conv2d(x, w, b, **hyper, algorithm="blocked")
            gy = rng.standard_normal(geo.output_shape).astype(dtype)
            gx = (K.conv2d_grad_input(gy, w, x.shape, **hyper, algorithm="blocked")
                  if blocked_runs(geo, "grad_input") else None)
        finally:
            K.set_num_threads(old)
    assert_matches(y, R.conv2d(x, w, b, **hyper), dtype, geo.kernel_h * geo.kernel_w)
    if gx is not None:
        assert_matches(gx, R.conv2d_grad_input(gy, w, x.shape, **hyper), dtype,
                       geo.kernel_h * geo.kernel_w)


def test_depthwise_runs_plane_by_plane_and_keeps_the_references_non_finite_values(monkeypatch):
    """"auto" sends the forward pass and the input gradient of the depthwise benchmark layer
    to conv2d_forward_depthwise, and an inf in the input or a NaN in a filter gives the
    reference's pattern (the padding's zeros are multiplied, as in the formula)."""
    calls, real = [], conv_module._conv_blocked.conv2d_forward_depthwise
    monkeypatch.setattr(conv_module._conv_blocked, "conv2d_forward_depthwise",
                        lambda *args: calls.append(args[1].shape) or real(*args))
    rng = np.random.default_rng(21)
    x, w, b = random_problem(rng, (2, 8, 9, 10), (8, 1, 3, 3), np.float32)
    x[0, 1, 0, 4] = np.inf
    w[5, 0, 1, 1] = np.nan
    y = K.conv2d(x, w, b, 1, 1, 1, 8)
    expected = R.conv2d(x, w, b, 1, 1, 1, 8)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_matches(np.where(finite, y, 0), np.where(finite, expected, 0), np.float32, 9)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    x[0, 1, 0, 4] = 0
    w[5, 0, 1, 1] = 1
    gx = K.conv2d_grad_input(gy, w, x.shape, 1, 1, 1, 8)
    assert_matches(gx, R.conv2d_grad_input(gy, w, x.shape, 1, 1, 1, 8), np.float32, 9)
    assert calls == [(8, 9), (8, 9)]


@pytest.mark.parametrize("width, plane_by_plane", [
    (conv_module.TILE + 3, True), (2 * conv_module.TILE, True),
    (2 * conv_module.TILE + 1, False), (56, False)])
def test_depthwise_kernel_runs_on_rows_of_at_most_two_vectors(width, plane_by_plane,
                                                              monkeypatch):
    """DEPTHWISE_MAX_WIDTH: the depthwise kernel takes rows of up to 2 vectors; wider rows
    go to the column tiles. Both give the reference's numbers."""
    calls, real = [], conv_module._conv_blocked.conv2d_forward_depthwise
    monkeypatch.setattr(conv_module._conv_blocked, "conv2d_forward_depthwise",
                        lambda *args: calls.append(1) or real(*args))
    x, w, b = random_problem(np.random.default_rng(width), (2, 3, 6, width), (3, 1, 3, 3),
                             np.float32)
    y = K.conv2d(x, w, b, 1, 1, 1, 3)
    assert_matches(y, R.conv2d(x, w, b, 1, 1, 1, 3), np.float32, 9)
    assert bool(calls) == plane_by_plane


@given(config=depthwise_configs(), dtype=st.sampled_from(DTYPES), threads=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_depthwise_weight_gradient_matches_reference(config, dtype, threads, seed):
    """The blocked path's depthwise weight gradient (conv2d_grad_weight_depthwise: 9 taps
    at a time, so kernels of up to 5x5 take 1 to 3 runs of taps) against the reference."""
    rng = np.random.default_rng(seed)
    x, w, _ = random_problem(rng, config["input_shape"], config["weight_shape"], dtype)
    hyper = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    geo = conv2d_geometry(x.shape, w.shape, **hyper)
    gy = rng.standard_normal(geo.output_shape).astype(dtype)
    old = K.get_num_threads()
    K.set_num_threads(threads)
    try:
        gw = K.conv2d_grad_weight(gy, x, w.shape, **hyper, algorithm="blocked")
    finally:
        K.set_num_threads(old)
    assert_matches(gw, R.conv2d_grad_weight(gy, x, w.shape, **hyper), dtype,
                   geo.batch * geo.out_h * geo.out_w)


@pytest.mark.parametrize("input_shape, k, padding, dilation", [
    ((1, 2, 1, 1), 1, 0, 1),            # 1x1 input and kernel
    ((2, 3, 1, 1), 3, 1, 1),            # 1x1 input, the kernel all padding but its centre
    ((2, 3, 5, 5), 3, 0, 2),            # dilated kernel as large as the input: 1x1 output
    ((3, 4, 7, 40), 5, 2, 1),           # 25 taps (3 runs of 9), rows wider than 2 vectors
    ((2, 16, 28, 28), 3, 1, 1),         # the benchmark's planes
    ((1, 3, 6, 17), 2, (1, 0), 3),      # even kernel, asymmetric padding, dilation 3
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_weight_gradient_edge_cases(input_shape, k, padding, dilation, dtype,
                                              monkeypatch):
    calls, real = [], conv_module._conv_blocked.conv2d_grad_weight_depthwise
    monkeypatch.setattr(conv_module._conv_blocked, "conv2d_grad_weight_depthwise",
                        lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(sum(input_shape) + k)
    c = input_shape[1]
    x, w, _ = random_problem(rng, input_shape, (c, 1, k, k), dtype)
    geo = conv2d_geometry(x.shape, w.shape, 1, padding, dilation, c)
    gy = rng.standard_normal(geo.output_shape).astype(dtype)
    gw = K.conv2d_grad_weight(gy, x, w.shape, 1, padding, dilation, c)
    assert_matches(gw, R.conv2d_grad_weight(gy, x, w.shape, 1, padding, dilation, c), dtype,
                   geo.batch * geo.out_h * geo.out_w)
    assert calls == [1]                 # "auto" took the depthwise kernel


def test_depthwise_weight_gradient_is_the_same_on_any_number_of_threads():
    """Each channel is summed by one thread, image after image: bit for bit the same."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((4, 6, 11, 13)).astype(np.float32)
    gy = rng.standard_normal((4, 6, 11, 13)).astype(np.float32)
    old = K.get_num_threads()
    try:
        K.set_num_threads(1)
        one = K.conv2d_grad_weight(gy, x, (6, 1, 3, 3), 1, 1, 1, 6)
        K.set_num_threads(2)
        two = K.conv2d_grad_weight(gy, x, (6, 1, 3, 3), 1, 1, 1, 6)
    finally:
        K.set_num_threads(old)
    np.testing.assert_array_equal(one, two)
    assert_matches(two, R.conv2d_grad_weight(gy, x, (6, 1, 3, 3), 1, 1, 1, 6), np.float32,
                   4 * 11 * 13)


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_depthwise_weight_gradient_keeps_the_references_non_finite_values(value):
    """A non-finite input reaches only the taps that read it in the formula (the kernel's
    vectors past the row's end multiply zeros by it: im2col computes that call again)."""
    rng = np.random.default_rng(23)
    x = rng.standard_normal((2, 3, 6, 20)).astype(np.float32)
    gy = rng.standard_normal((2, 3, 6, 20)).astype(np.float32)
    x[1, 2, 3, 19] = value                               # the last column: read past by tiles
    gw = K.conv2d_grad_weight(gy, x, (3, 1, 3, 3), 1, 1, 1, 3)
    with np.errstate(invalid="ignore"):
        expected = R.conv2d_grad_weight(gy, x, (3, 1, 3, 3), 1, 1, 1, 3)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_matches(np.where(finite, gw, 0), np.where(finite, expected, 0), np.float32, 240)


def test_depthwise_weight_gradient_kernel_checks_its_lanes():
    x = np.ones((1, 2, 4, 4), np.float32)
    gw = np.empty((2, 9), np.float32)
    padded = np.zeros((1, 1024), np.float32)
    gy_rows = np.zeros((1, 256), np.float32)
    lanes = np.zeros((1, 9 * conv_module.TILE - 1), np.float32)
    with pytest.raises(ValueError, match=f"lanes needs {9 * conv_module.TILE} values a thread, "
                                         f"got {9 * conv_module.TILE - 1}"):
        conv_module._conv_blocked.conv2d_grad_weight_depthwise(x, x, gw, padded, gy_rows, lanes,
                                                               3, 3, 1, 1, 1, 1, 1)
