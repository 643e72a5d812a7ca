"""2-D convolution on NumPy arrays with the compiled kernels: forward and gradients.

Same signatures as ``cyconv.reference`` (plus a keyword-only ``algorithm``), so tests and
benchmarks can swap one for the other. Arguments are checked here, once, by
``cyconv.geometry``; the Cython loops trust them.

Four algorithms compute the same numbers:

- ``"direct"``: the loop-level kernel of ``_conv_direct.pyx``, the formula written as loops,
  to read and learn from. It needs no workspace.
- ``"blocked"``: ``_conv_blocked.pyx``, the same sum as direct loops reordered for the CPU:
  a zero-padded copy of the input planes, and tiles of 4 channels x 3 rows x 8 columns
  (4 x 6 x 16 in float32 with AVX-512) summed in vector registers; in float32 with
  AVX-512, where that fills the vectors better, vectors of 16 output channels instead
  (forward_channel_tile, grad_weight_by_channels). Its input gradient needs stride 1 and
  padding at most dilation * (kernel - 1).
- ``"im2col"``: ``_im2col.pyx`` copies the receptive fields of a band of output rows into
  the columns of a matrix and multiplies it by the weight matrix with BLAS; every thread
  runs that pipeline on its own bands. It wins the gradients where each output sums over
  many inputs (C_in/groups * kH * kW large).
- ``"winograd"``: ``_conv_winograd.pyx``, Winograd's F(2x2, 3x3) for 3x3 kernels with
  stride 1 and dilation 1 or 2: 2x2 outputs from 16 products of transformed inputs and
  weights instead of 36 (its sums round differently from the others, within float32's
  precision). Its input gradient is the same kind of convolution.

``algorithm="auto"`` (the default) picks one per pass with :func:`choose_algorithm`.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from .. import geometry as geo
from . import _conv_blocked, _conv_direct, _conv_winograd, _elementwise, _im2col
from .threads import get_num_threads, threads_for

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
           "choose_algorithm", "ALGORITHMS"]

ALGORITHMS = ("auto", "direct", "im2col", "blocked", "winograd")

#: Size (bytes) of one thread's im2col columns: blocks of output columns are chosen so that
#: their columns fit, and stay in the cache between the copy and the matrix product.
BAND_BYTES = 2**20

#: Below this many multiply-adds per output value (C_in/groups * kH * kW), "auto" picks the
#: direct loops where the blocked kernels cannot run; the matrix product does not pay for
#: the im2col copy there.
DIRECT_MAX_REDUCTION = 16

#: "auto" computes the weight gradient with the blocked kernels when a group has at most this
#: many output channels (there the matrix products of im2col are small).
BLOCKED_MAX_GRAD_WEIGHT_CHANNELS = 32

#: "auto" runs Winograd (3x3, stride 1, dilation 1 or 2) where a group has at least ``channels``
#: input and output channels and the image is at least ``width`` columns wide, for one of
#: these (channels, width) pairs. With fewer channels its transforms cost more than the
#: multiplications they save; on narrow images a row of tiles fills its vectors of 8 badly.
WINOGRAD_MIN_SIZES = ((64, 24), (128, 12))

#: ... and also where a group has at least 32 input and output channels, 2048 or more
#: pairs of them, the image is at least 16 columns wide, and the blocked pass would run
#: its short tile over channels (2 x 8, on rows of 32, 23 or 16, say:
#: forward_channel_tile), which is slower than its 2 x 14 tile. Measured with AVX-512:
#: Winograd 1.02-1.51x faster on the forward pass and 1.01-1.43x on the input gradient
#: (on 32x32 images: 32 -> 64 channels, the CIFAR layer, 1.09-1.15x and 1.04-1.08x,
#: 48 -> 48 1.51x and 1.43x; 64 channels on 16x16 to 23x23 images 1.03-1.40x; 48 on 16x16
#: 1.22x), but 0.96x on both with 32 -> 32 channels on 32x32, even on 12x12 images and
#: 0.6-0.75x on 8x8 ones. As (channels, pairs of channels, width).
WINOGRAD_SHORT_TILE_MIN = (32, 2048, 16)

#: ... and, with dilation 2, only on images at least this wide (both rules above). Its tiles
#: go in pairs over 4 columns (and rows): on narrow images more of them are part-filled
#: (14 columns take 16), and the transforms weigh more against the products. (It decides
#: only where the rules above allow narrower images: 128 channels, 12 to 23 wide, and the
#: short-tile rule, 16 to 23.) Measured on AMD Zen 4 (AVX-512), the blocked pass's time /
#: Winograd's, forward and input gradient: 64 channels on 24x24, 28x28, 30x30 and 56x56 images
#: 1.30/1.29, 1.11/1.10, 1.13/1.12, 1.21/1.20; 32 -> 64 channels on 32x32 1.13/1.15, 48 on
#: 32x32 1.49/1.50; but 128 channels on 14x14 0.94/0.95.
WINOGRAD_DILATED_MIN_WIDTH = 24

#: What each pass computes, as ``choose_algorithm`` names them.
PASSES = ("output", "grad_input", "grad_weight")


def choose_algorithm(geometry: geo.ConvGeometry, computing: str = "output",
                     dtype=np.float32) -> str:
    """The algorithm "auto" runs for one pass of this convolution: "winograd", "blocked",
    "direct" or "im2col"; ``computing`` is "output" (the forward pass), "grad_input" or
    "grad_weight"; ``dtype`` that of the arrays (it matters for the weight gradient).

    The rule follows measurements on this project's machine (every algorithm on every pass
    of the benchmark shapes, interleaved; the table is in bench/RESULTS.md): Winograd wins
    the 3x3 stride-1 forward passes and input gradients with many channels on wide enough
    images (WINOGRAD_MIN_SIZES), and with fewer where the blocked kernels would run their
    short tile (WINOGRAD_SHORT_TILE_MIN); with dilation 2, both only on images at least
    WINOGRAD_DILATED_MIN_WIDTH wide; the blocked kernels win the other forward passes; the
    input gradient (a forward convolution with C_in/groups output channels) where those
    come in whole tiles of 4, or are fewer than 4, and without dilation (with it too, with
    AVX-512's vectors of 16); and the weight
    gradient where it runs over output channels (grad_weight_by_channels), or with at most
    32 output channels per group where the output rows fill at least 3/4 of the lanes of
    their vectors (or a group has fewer than 4 output channels). The im2col matrix products
    win the other gradients. (The rules are tuned for float32; in float64 the weight
    gradient over output channels lost to im2col, so it is left out.)
    """
    if computing not in PASSES:
        raise ValueError(f"computing must be one of {PASSES}, got {computing!r}")
    g = geometry
    out_per_group = g.out_channels // g.groups
    if winograd_unsupported(g, computing) is None:
        in_g, out_g = g.in_channels // g.groups, g.out_channels // g.groups
        channels = min(in_g, out_g)
        width = g.out_w if computing == "output" else g.in_w
        wide_enough = g.dilation == (1, 1) or width >= WINOGRAD_DILATED_MIN_WIDTH
        if wide_enough and any(channels >= c and width >= w for c, w in WINOGRAD_MIN_SIZES):
            return "winograd"
        blocked_tile = forward_channel_tile(out_g if computing == "output" else in_g, width,
                                            dtype)
        least, pairs, narrowest = WINOGRAD_SHORT_TILE_MIN
        if (wide_enough and channels >= least and in_g * out_g >= pairs and width >= narrowest
                and blocked_tile == (2, 8)):
            return "winograd"
    if blocked_unsupported(g, computing) is None:
        if computing == "output":
            return "blocked"
        in_per_group = g.in_channels // g.groups
        if (computing == "grad_input" and (in_per_group < 4 or in_per_group % 4 == 0)
                and (g.dilation == (1, 1) or TILE == 16)):
            return "blocked"
        columns_fit = (out_per_group <= BLOCKED_MAX_GRAD_WEIGHT_CHANNELS
                       and (out_per_group < BLOCK or lanes_used(g.out_w) >= 0.75))
        if computing == "grad_weight" and (grad_weight_by_channels(g, dtype) or columns_fit):
            return "blocked"
    reduction = (g.in_channels // g.groups) * g.kernel_h * g.kernel_w
    return "direct" if reduction < DIRECT_MAX_REDUCTION else "im2col"


def _fill(count: int, tile: int) -> float:
    """The share of whole tiles of ``tile`` that ``count`` items fill: 8 of 16 fill half."""
    return count / (-(-count // tile) * tile)


def lanes_used(width: int) -> float:
    """The share of the lanes of the blocked kernels' vectors (TILE columns) that a row of
    ``width`` outputs fills: 8 columns fill half of a vector of 16."""
    return _fill(width, TILE)


#: Taps per register tile of the weight gradient over output channels (and its vectors of
#: output channels: 2).
GRAD_WEIGHT_TAPS = 12


def grad_weight_by_channels(g: geo.ConvGeometry, dtype=np.float32) -> bool:
    """Whether the blocked weight gradient runs vectorised over output channels
    (_conv_blocked.conv2d_grad_weight_by_channels) rather than over output columns.

    It does in float32 (in float64 its 24 accumulators need twice the registers there are)
    with vectors of 16 (AVX-512: its 24 accumulators fill the 32 registers), where
    a group's taps (C_in/groups * kH * kW) fill at least 3/4 of the tiles of 12, and its
    output channels at least 3/4 of one vector (groups of 12 to 16 channels: tiles of one
    vector, 1.1-2.2x faster than the column tiles) or of the tiles' 2 vectors, or more than
    one vector where the output rows fill less than 3/4 of the column tiles' (8 columns of
    16, say): measured faster than both the column tiles and im2col on the benchmark
    shapes that pass.
    """
    out_g = g.out_channels // g.groups
    taps = (g.in_channels // g.groups) * g.kernel_h * g.kernel_w
    if out_g <= TILE:
        channels_fit = _fill(out_g, TILE) >= 0.75
    else:
        channels_fit = _fill(out_g, 2 * TILE) >= 0.75 or lanes_used(g.out_w) < 0.75
    return (TILE == 16 and np.dtype(dtype) == np.float32
            and _fill(taps, GRAD_WEIGHT_TAPS) >= 0.75 and channels_fit)


def _resolve(algorithm: str, geometry: geo.ConvGeometry, computing: str, dtype) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return choose_algorithm(geometry, computing, dtype) if algorithm == "auto" else algorithm


def _loop_args(g: geo.ConvGeometry) -> tuple:
    """stride, padding (top, left) and dilation in the order the Cython kernels take them."""
    return (g.stride[0], g.stride[1], g.padding[0], g.padding[2], g.dilation[0], g.dilation[1])


def im2col_blocks(g: geo.ConvGeometry, itemsize: int, threads: int,
                  whole_images: bool = False) -> tuple[int, int]:
    """How the im2col kernels cut the output into blocks: (images per block, rows per band).

    A block's columns should fit in BAND_BYTES, so that they stay in the cache between the
    copy and the matrix product: small images go several to a block, large ones are cut
    into bands of output rows (unless ``whole_images``; col2im needs whole images). Blocks
    are made smaller when that gives every thread at least two of them.
    """
    column_rows = (g.in_channels // (g.groups if whole_images else 1)) * g.kernel_h * g.kernel_w
    row_bytes = column_rows * g.out_w * itemsize            # the columns of one output row
    enough = 2 * threads
    if whole_images or row_bytes * g.out_h <= BAND_BYTES:
        images = max(1, min(g.batch, BAND_BYTES // (row_bytes * g.out_h)))
        # as many blocks as that needs, but at least `enough`, and a multiple of the threads
        blocks = max(enough, -(-g.batch // images))
        blocks = min(g.batch, -(-blocks // threads) * threads)
        images = -(-g.batch // blocks)
        if images > 1 or whole_images or g.batch >= enough:
            return images, g.out_h
    rows = max(1, min(g.out_h, BAND_BYTES // row_bytes))    # bands of rows of one image
    while rows > 1 and g.batch * -(-g.out_h // rows) < enough:
        rows = -(-rows // 2)
    return 1, rows


#: Bytes of a cache line: every thread's row of a workspace starts on a line of its own.
CACHE_LINE = 64


def _workspace(name: str, threads: int, size: int, dtype) -> np.ndarray:
    """A (threads, row) scratch matrix, row >= size, kept per Python thread and reused.

    A fresh multi-megabyte array per call would be fresh memory from the operating system,
    and touching its pages for the first time costs about as much as the im2col copy.
    Each thread's row starts on a cache line of its own (row is size rounded up to whole
    lines, and the first row is aligned): two threads writing into one line would pass it
    back and forth between their cores on every write ("false sharing"), which made small
    workspaces, written at every tile, slower on 2 threads than on 1. The kernels use
    row t from its start, so the rounding up is only room left over. The view handed out
    is kept too, for the next call with the same shape (making it took 2.5 us).
    """
    dtype = np.dtype(dtype)
    line = CACHE_LINE // dtype.itemsize                      # entries per cache line
    row = -(-size // line) * line
    views = _local.__dict__.setdefault("views", {})
    view = views.get((name, dtype, threads, row))
    if view is not None:
        return view
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get((name, dtype))
    if buffer is None or buffer.size < threads * row + line:
        buffer = buffers[(name, dtype)] = np.empty(threads * row + line, dtype)
        for old in [key for key in views if key[:2] == (name, dtype)]:
            del views[old]                                   # views of the smaller buffer
    start = (-buffer.ctypes.data % CACHE_LINE) // dtype.itemsize   # first entry on a line
    view = views[(name, dtype, threads, row)] = buffer[start:start + threads * row].reshape(
        threads, row)
    return view


_local = threading.local()


# --- the register-blocked direct kernels (_conv_blocked.pyx) -------------------------------

#: Output columns (one vector of the build: 16 with AVX-512, else 8) and channels (or taps)
#: of one register tile of the blocked kernels.
TILE, BLOCK = _conv_blocked.TILE_COLUMNS, 4


@functools.lru_cache(maxsize=256)
def _tap_offsets(cg: int, kernel: tuple, stride_w: int, dilation: tuple, wp: int) -> np.ndarray:
    """Where tap k = (c*kH + p)*kW + q of output (0, 0) lies in the padded rows (Hp, Cg, Wp)
    of _conv_blocked.pad_rows: row p*dh, channel c, and column q*dw, which with
    stride_w > 1 is in phase q*dw % stride_w. Cached (a network asks for the same few
    again and again), so the array is read-only."""
    c, p, q = np.meshgrid(np.arange(cg), np.arange(kernel[0]), np.arange(kernel[1]), indexing="ij")
    column = q * dilation[1]
    phase_start = (column % stride_w) * (wp // stride_w) + column // stride_w
    offsets = (p * dilation[0] * cg * wp + c * wp + phase_start).ravel().astype(np.intp)
    offsets.flags.writeable = False
    return offsets


def blocked_unsupported(g: geo.ConvGeometry, computing: str = "output") -> str | None:
    """Why the "blocked" kernels cannot run this pass ("output", "grad_input" or
    "grad_weight") of the convolution, or None if they can.

    The output and the weight gradient run with any stride; the input gradient, computed as
    a convolution of the output gradient with the flipped weight, needs stride 1 and padding
    no larger than dilation * (kernel - 1) on the top and the left.
    """
    if computing == "grad_input":
        if g.stride != (1, 1):
            return f"stride 1 for the input gradient (got stride {g.stride})"
        if (g.padding[0] > g.dilation[0] * (g.kernel_h - 1)
                or g.padding[2] > g.dilation[1] * (g.kernel_w - 1)):
            return ("padding (top, left) of at most dilation * (kernel - 1) for the input "
                    f"gradient (got padding {g.padding})")
    return None


def _check_blocked(g: geo.ConvGeometry, computing: str) -> None:
    reason = blocked_unsupported(g, computing)
    if reason is not None:
        raise ValueError(f"algorithm='blocked' needs {reason}; use 'auto', 'direct' or 'im2col'")


def _check_winograd(g: geo.ConvGeometry, computing: str) -> None:
    reason = winograd_unsupported(g, computing)
    if reason is not None:
        raise ValueError(f"algorithm='winograd' needs {reason}; use 'auto', 'direct', "
                         "'im2col' or 'blocked'")


#: Bytes of a band of the output gradient of 4 channels that the blocked weight gradient
#: sums every tap over before it moves on: small enough to stay in the L1 cache.
GRAD_WEIGHT_BAND_BYTES = 2**14

#: Output rows per task of the blocked forward kernel: a multiple of the tile heights (3 and
#: 6 rows, 8 for the channels left over), small enough that one image gives the threads
#: several tasks to share, large enough that the input rows two chunks both pad
#: (dilation * (kernel - 1) + 1 - stride of them) cost little.
CHUNK_ROWS = 24


def _padded_size(out_h: int, out_w: int, kernel: tuple, stride: tuple, dilation: tuple,
                 chunk: int | None = None) -> tuple:
    """(Hp, Wp): the padded rows and columns the blocked tiles of ``chunk`` output rows (all
    of them for None) read, stick-out tiles included. The rows follow the kernel's
    tile_rows_for: whole tiles of 6 and of 8 rows."""
    if chunk is not None:
        out_h = min(out_h, chunk)
    rows = max(-(-out_h // 6) * 6, -(-out_h // 8) * 8)   # tiles of 3 or 6 rows, or of 8
    cols = -(-out_w // TILE) * TILE
    phase = cols + (kernel[1] - 1) * dilation[1] // stride[1]   # one phase of a row
    return (rows - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1, stride[1] * phase


#: Bytes of input rows the blocked forward tiles should find in the L1 cache: a tile sums
#: the channels in chunks whose rows fit in it (see _chunk_taps).
BLOCKED_L1_BYTES = 2**15


def _chunk_taps(cg: int, kernel: tuple, wp: int, stride_h: int, dilation_h: int,
                itemsize: int) -> int:
    """Taps (whole channels of kH*kW) the blocked forward kernel sums over every tile of a
    row of tiles before it moves on to the next channels (adding to the sums so far).

    A 6-row tile reads 5 * stride_h + dilation_h * (kH - 1) + 1 padded rows of each
    channel; the chunks are as few, and as even, as keep those rows of one chunk within
    BLOCKED_L1_BYTES, so that the 4-channel blocks and tiles along the row that follow find
    them in the L1 cache instead of fetching them again from L2.
    """
    rows = 5 * stride_h + dilation_h * (kernel[0] - 1) + 1
    fit = max(1, BLOCKED_L1_BYTES // (rows * wp * itemsize))
    chunks = -(-cg // fit)
    return -(-cg // chunks) * kernel[0] * kernel[1]


#: The register tiles of the forward pass over output channels
#: (_conv_blocked.conv2d_forward_by_channels), as (vectors of output channels, output
#: positions along a row), in the order "auto" prefers them: each holds 28 accumulators
#: (2 x 8 = 16: rows of 8 and their multiples, too short or too oddly long for 14).
CHANNEL_TILES = ((2, 14), (2, 8), (1, 28))


def forward_channel_tile(out_channels_per_group: int, out_w: int, dtype) -> tuple | None:
    """The register tile, (vectors of output channels, positions along a row) of
    CHANNEL_TILES, in which the blocked forward pass (and input gradient) runs vectorised
    over output channels (_conv_blocked.conv2d_forward_by_channels), or None where it runs
    over output columns instead.

    Over channels only in float32 with vectors of 16 (AVX-512): the first tile whose
    vectors a group's output channels fill to at least 3/4 and whose positions the rows
    fill to at least 0.85, whatever the stride. Measured against the column tiles:
    2 x 14 10-23% faster on rows of 14, 28 and 56 at stride 1, 11% on the 7x7 stride-2
    stem, 51% on a 3x3 stride-2 layer, 35% at stride 4, but 18% slower on rows of 32 (3/4
    of its positions); 2 x 8 2-2.3x faster on rows of 7 and 8, 2-24% on rows of 16, 24 and
    32; 1 x 28 11-23% faster on groups of 16 channels.
    """
    if TILE != 16 or np.dtype(dtype) != np.float32:
        return None
    for vectors, positions in CHANNEL_TILES:
        if (_fill(out_channels_per_group, vectors * TILE) >= 0.75
                and _fill(out_w, positions) >= 0.85):
            return vectors, positions
    return None


def _blocked_conv(x, weight, bias, y, pad_top, pad_left, stride, dilation, groups, threads):
    """y (N, C_out, H_out, W_out) = conv2d(x, weight) + bias with _conv_blocked: tiles over
    output columns, or over output channels where forward_channel_tile says so, or, for a
    depthwise convolution with stride 1 on rows of at most DEPTHWISE_MAX_WIDTH, plane by
    plane (conv2d_forward_depthwise)."""
    if (weight.shape[1] == 1 and weight.shape[0] == groups and stride == (1, 1)
            and y.shape[3] <= DEPTHWISE_MAX_WIDTH):
        return _depthwise_conv(x, weight, bias, y, pad_top, pad_left, dilation, threads)
    tile = forward_channel_tile(weight.shape[0] // groups, y.shape[3], x.dtype)
    if tile is not None:
        return _blocked_conv_by_channels(x, weight, bias, y, pad_top, pad_left, stride,
                                         dilation, groups, threads, tile)
    c_out, cg, kh, kw = weight.shape
    out_g = c_out // groups
    blocks = out_g // BLOCK
    taps = cg * kh * kw
    w_matrix = np.ascontiguousarray(weight.reshape(c_out, taps))
    w_blocks = np.empty((groups, blocks, taps, BLOCK), x.dtype)  # a block's 4 channels side by side
    _conv_blocked.pack_blocks(w_matrix, w_blocks)
    hp, wp = _padded_size(y.shape[2], y.shape[3], (kh, kw), stride, dilation, CHUNK_ROWS)
    padded = _workspace("padded", threads, hp * cg * wp, x.dtype)
    scratch = _workspace("scratch", threads, 6 * BLOCK * TILE, x.dtype)
    bias = np.zeros(c_out, x.dtype) if bias is None else bias
    _conv_blocked.conv2d_forward(x, w_blocks, w_matrix, bias,
                                 _tap_offsets(cg, (kh, kw), stride[1], dilation, wp), y,
                                 padded, scratch, CHUNK_ROWS,
                                 _chunk_taps(cg, (kh, kw), wp, stride[0], dilation[0], x.itemsize),
                                 dilation[0] * (kh - 1) + 1, wp,
                                 stride[0], stride[1], pad_top, pad_left, groups, threads)
    return y


#: The widest output rows the blocked path sends to the depthwise kernel (one pair of its
#: vectors). Measured with AVX-512 against the column tiles (3x3 unless said): 1.36-2.03x
#: faster on 4x4, 14x14 and 28x28 planes (5x5 on 28x28: 1.40x), level on 7x7, but
#: 0.62-0.91x on planes 40 to 112 wide, where the column tiles waste fewer lanes and copy
#: the padded rows a chunk at a time.
DEPTHWISE_MAX_WIDTH = 2 * TILE


def _depthwise_conv(x, weight, bias, y, pad_top, pad_left, dilation, threads):
    """y = conv2d(x, weight) + bias for a depthwise weight (C, 1, kH, kW), groups = C, stride
    1, with _conv_blocked.conv2d_forward_depthwise (see DEPTHWISE_MAX_WIDTH)."""
    c, _, kh, kw = weight.shape
    padded = _workspace("padded", threads,
                        _conv_blocked.depthwise_padded_size(*y.shape[2:], kh, kw, *dilation),
                        x.dtype)
    bias = np.zeros(c, x.dtype) if bias is None else bias
    _conv_blocked.conv2d_forward_depthwise(x, np.ascontiguousarray(weight.reshape(c, kh * kw)),
                                           bias, y, padded, kh, kw, pad_top, pad_left,
                                           dilation[0], dilation[1], threads)
    return y


def _blocked_conv_by_channels(x, weight, bias, y, pad_top, pad_left, stride, dilation,
                              groups, threads, tile=CHANNEL_TILES[0]):
    """y = conv2d(x, weight) + bias with
    _conv_blocked.conv2d_forward_by_channels, in register tiles of ``tile`` = (vectors of
    channels, positions), one of CHANNEL_TILES: the weights of each group's output channels
    in blocks of that many vectors, tap-major, zero filters past the group's channels."""
    if tile not in CHANNEL_TILES:
        raise ValueError(f"tile must be one of {CHANNEL_TILES}, got {tile!r}")
    vectors, positions = tile
    c_out, cg, kh, kw = weight.shape
    out_g = c_out // groups
    channel_tile = vectors * TILE
    cb = -(-out_g // channel_tile)
    w_t = np.empty((groups, cb, cg * kh * kw, channel_tile), x.dtype)
    _conv_blocked.pack_blocks(np.ascontiguousarray(weight.reshape(c_out, -1)), w_t)
    if bias is not None and out_g % channel_tile == 0:
        bias_t = bias.reshape(groups, out_g)             # whole blocks: nothing to pad
    else:
        bias_t = np.zeros((groups, cb * channel_tile), x.dtype)
        if bias is not None:
            bias_t[:, :out_g] = bias.reshape(groups, out_g)
    phase = -(-y.shape[3] // positions) * positions + dilation[1] * (kw - 1) // stride[1]
    wp = stride[1] * phase                              # each stride phase of a padded row
    reach = dilation[0] * (kh - 1) + 1
    rows = (min(CHUNK_ROWS, y.shape[2]) - 1) * stride[0] + reach
    padded = _workspace("padded", threads, rows * cg * wp, x.dtype)
    _conv_blocked.conv2d_forward_by_channels(
        x, w_t, bias_t, _tap_offsets(cg, (kh, kw), stride[1], dilation, wp), y, padded,
        positions, CHUNK_ROWS, reach, wp, stride[0], stride[1], pad_top, pad_left, groups,
        threads)
    return y


def _blocked_grad_input(grad_y, weight, g: geo.ConvGeometry, threads):
    """The input gradient as a convolution: grad_x = conv2d(grad_y, w') with the weight
    flipped and its two channel axes swapped within each group,
    w'[g*Cg + c, co, p, q] = w[g*out_g + co, c, kH-1-p, kW-1-q], and padding
    dilation * (kernel - 1) - padding (stride 1)."""
    kh, kw = weight.shape[2:]
    grad_x = np.empty(g.input_shape, weight.dtype)
    return _blocked_conv(grad_y, _flipped(weight, g.groups), None, grad_x,
                         g.dilation[0] * (kh - 1) - g.padding[0],
                         g.dilation[1] * (kw - 1) - g.padding[2], (1, 1), g.dilation, g.groups,
                         threads)


def _flipped(weight, groups):
    """w'[g*Cg + c, co, p, q] = w[g*out_g + co, c, kH-1-p, kW-1-q]: the weight of the
    convolution that gives the input gradient (stride 1), (C_in, C_out/groups, kH, kW)."""
    c_out, cg, kh, kw = weight.shape
    return (weight.reshape(groups, c_out // groups, cg, kh, kw)[:, :, :, ::-1, ::-1]
            .transpose(0, 2, 1, 3, 4).reshape(groups * cg, c_out // groups, kh, kw))


def _blocked_grad_weight_by_channels(grad_y, x, g: geo.ConvGeometry, threads):
    """The weight gradient with _conv_blocked's conv2d_grad_weight_by_channels: 2 vectors of
    output channels (1 for groups of at most one vector's channels) x 12 taps at a time,
    every product one of the formula's."""
    cg, kh, kw = g.in_channels // g.groups, g.kernel_h, g.kernel_w
    out_g = g.out_channels // g.groups
    taps = cg * kh * kw
    hp = (g.out_h - 1) * g.stride[0] + g.dilation[0] * (kh - 1) + 1
    wp = (g.out_w - 1) * g.stride[1] + g.dilation[1] * (kw - 1) + 1
    r12 = -(-taps // GRAD_WEIGHT_TAPS) * GRAD_WEIGHT_TAPS
    offsets = np.concatenate([_tap_offsets(cg, (kh, kw), 1, g.dilation, wp),
                              np.zeros(r12 - taps, np.intp)])
    vectors = 1 if out_g <= TILE else 2
    op = -(-out_g // (vectors * TILE)) * vectors * TILE
    padded = _workspace("padded", threads, hp * cg * wp, x.dtype)
    gy_t = _workspace("gy_t", threads, g.out_h * g.out_w * op, x.dtype)
    sums = _workspace("tap_sums", threads, 2 * GRAD_WEIGHT_TAPS * TILE, x.dtype)
    partial = np.zeros((threads, g.groups, r12, op), x.dtype)
    _conv_blocked.conv2d_grad_weight_by_channels(
        x, grad_y, partial, padded, gy_t, sums, offsets, hp, wp,
        g.stride[0], g.stride[1], g.padding[0], g.padding[2], g.groups, threads)
    summed = partial.sum(axis=0)[:, :taps, :out_g]          # (groups, taps, out_g)
    return np.ascontiguousarray(summed.transpose(0, 2, 1)).reshape(g.weight_shape)


def _blocked_grad_weight(grad_y, x, g: geo.ConvGeometry, threads):
    """The weight gradient with _conv_blocked: 4 channels x 3 taps (x 6 taps in float32 with
    AVX-512; the channels left over: 1 channel x 4 taps) of the filters at a time; where
    grad_weight_by_channels says so, 2 vectors of output channels (1 for groups of at most
    one vector's channels) x 12 taps (_blocked_grad_weight_by_channels).

    The tiles that stick out past the last column (or row) multiply a zero output gradient
    by whatever input lies there; if that input holds an inf or a NaN, 0 * inf = NaN would
    land in taps the exact sum never multiplies by it. A non-finite result therefore is
    computed again with im2col, whose products are exactly the formula's, so the NaNs and
    infs are the reference's. (A finite result means no product was inf or NaN.)
    """
    if g.in_channels == g.out_channels == g.groups and g.stride == (1, 1):
        return _depthwise_grad_weight(grad_y, x, g, threads)
    if grad_weight_by_channels(g, x.dtype):
        return _blocked_grad_weight_by_channels(grad_y, x, g, threads)
    cg, kh, kw = g.in_channels // g.groups, g.kernel_h, g.kernel_w
    out_g = g.out_channels // g.groups
    hp, wp = _padded_size(g.out_h, g.out_w, (kh, kw), g.stride, g.dilation)
    offsets = np.concatenate([_tap_offsets(cg, (kh, kw), g.stride[1], g.dilation, wp),
                              np.zeros(5, np.intp)])  # the last tile's missing taps
    padded = _workspace("padded", threads, hp * cg * wp, x.dtype)
    gy_padded = _workspace("gy_padded", threads,
                           out_g * 2 * -(-g.out_h // 2) * -(-g.out_w // TILE) * TILE, x.dtype)
    tap_lanes = _workspace("tap_lanes", threads, -(-(cg * kh * kw) // 6) * 6 * BLOCK * TILE,
                           x.dtype)
    gy_row_bytes = -(-g.out_w // TILE) * TILE * x.itemsize
    band = max(1, GRAD_WEIGHT_BAND_BYTES // (BLOCK * gy_row_bytes))
    partial = np.zeros((threads, g.out_channels, offsets.size), x.dtype)
    _conv_blocked.conv2d_grad_weight(x, grad_y, partial, padded, gy_padded, tap_lanes, band,
                                     offsets, hp, wp,
                                     g.stride[0], g.stride[1], g.padding[0], g.padding[2],
                                     g.groups, threads)
    grad_w = partial[:, :, :offsets.size - 5].sum(axis=0).reshape(g.weight_shape)
    if not np.isfinite(grad_w).all():
        return _im2col_grad_weight(grad_y, x, g, threads)
    return grad_w


def _depthwise_grad_weight(grad_y, x, g: geo.ConvGeometry, threads):
    """The weight gradient of a depthwise convolution (C, 1, kH, kW), groups = C, stride 1,
    with _conv_blocked.conv2d_grad_weight_depthwise: channel by channel, each plane in the
    L1 cache, 9 taps at a time in vector registers. A non-finite result is computed again
    with im2col (see _blocked_grad_weight: the vectors past the last column multiply zeros
    by the padded input). Measured on AMD Zen 4 against the column tiles it replaces
    (3x3): 1.54-1.69x faster on 14x14 to 32x32 planes, 1.25-1.31x on 40x40 to 112x112
    (hence on rows of any width), 1.15x with a 5x5 kernel (3 runs of 9 taps)."""
    c, kh, kw = g.in_channels, g.kernel_h, g.kernel_w
    padded = _workspace("padded", threads,
                        _conv_blocked.depthwise_padded_size(g.out_h, g.out_w, kh, kw,
                                                            *g.dilation), x.dtype)
    gy_rows = _workspace("gy_padded", threads, g.out_h * -(-g.out_w // TILE) * TILE, x.dtype)
    lanes = _workspace("tap_lanes", threads, _conv_blocked.DEPTHWISE_GRAD_TAP_COUNT * TILE,
                       x.dtype)
    grad_w = np.empty((c, kh * kw), x.dtype)
    _conv_blocked.conv2d_grad_weight_depthwise(x, grad_y, grad_w, padded, gy_rows, lanes, kh, kw,
                                               g.padding[0], g.padding[2], *g.dilation, threads)
    grad_w = grad_w.reshape(g.weight_shape)
    if not np.isfinite(grad_w).all():
        return _im2col_grad_weight(grad_y, x, g, threads)
    return grad_w


# --- Winograd F(2x2, 3x3) (_conv_winograd.pyx) ----------------------------------------------

#: Tiles (2x2 outputs) per register tile of the Winograd products (3 vectors: 48 with
#: AVX-512, else 24), and the most tiles per task.
WINOGRAD_SPAN, WINOGRAD_MAX_TILES = _conv_winograd.SPAN_TILES, 96

#: Bytes of one Winograd task's transformed inputs and products (V and M): tasks take as
#: many tiles as fit, so that they stay in the thread's L2 cache between the steps.
WINOGRAD_TASK_BYTES = 2**18


def winograd_unsupported(g: geo.ConvGeometry, computing: str = "output") -> str | None:
    """Why the "winograd" kernel cannot run this pass of the convolution, or None if it can.

    It computes 3x3 convolutions with stride 1 and dilation 1 or 2 (the same on both axes);
    the input gradient as a convolution of the output gradient with the flipped weight
    (which needs padding of at most 2 * dilation on the top and the left); not the weight
    gradient.
    """
    if computing == "grad_weight":
        return "a forward pass or an input gradient (not the weight gradient)"
    if ((g.kernel_h, g.kernel_w) != (3, 3) or g.stride != (1, 1)
            or g.dilation not in ((1, 1), (2, 2))):
        return (f"a 3x3 kernel, stride 1 and dilation 1 or 2 (got kernel "
                f"{(g.kernel_h, g.kernel_w)}, stride {g.stride}, dilation {g.dilation})")
    reach = 2 * g.dilation[0]
    if computing == "grad_input" and (g.padding[0] > reach or g.padding[2] > reach):
        return (f"padding (top, left) of at most 2 * dilation = {reach} for the input gradient "
                f"(got padding {g.padding})")
    return None


def winograd_tiles(cg: int, kp: int, itemsize: int) -> int:
    """Tiles per task of the Winograd kernel: whole spans (WINOGRAD_SPAN), as many (up to
    WINOGRAD_MAX_TILES tiles) as keep the task's V and M within WINOGRAD_TASK_BYTES."""
    span_bytes = 16 * (cg + kp) * WINOGRAD_SPAN * itemsize
    spans = min(WINOGRAD_MAX_TILES // WINOGRAD_SPAN, WINOGRAD_TASK_BYTES // span_bytes)
    return WINOGRAD_SPAN * max(1, spans)


def _winograd_conv(x, weight, bias, y, pad_top, pad_left, dilation, groups, threads):
    """y (N, C_out, H_out, W_out) = conv2d(x, weight) + bias with _conv_winograd (a 3x3
    weight, stride 1, dilation 1 or 2 on both axes); where an output is an inf or a NaN, all
    of y is computed again with the blocked direct sum, whose infs and NaNs are those of the
    formula's order of sums."""
    c_out, cg = weight.shape[:2]
    kp = -(-(c_out // groups) // BLOCK) * BLOCK
    tiles = winograd_tiles(cg, kp, x.itemsize)
    work = _workspace("winograd", threads,
                      _conv_winograd.workspace_size(cg, kp, y.shape[3], tiles, dilation), x.dtype)
    nonfinite = np.zeros(threads, np.intc)
    bias = np.zeros(c_out, x.dtype) if bias is None else bias
    u = np.empty((groups, 16, kp // BLOCK, cg, BLOCK), x.dtype)
    _conv_winograd.transform_weights(np.ascontiguousarray(weight), u, threads)
    _conv_winograd.conv2d_forward(x, u, bias, y, work, nonfinite, tiles, pad_top, pad_left,
                                  dilation, groups, threads)
    if nonfinite.any():
        _blocked_conv(x, weight, bias, y, pad_top, pad_left, (1, 1), (dilation, dilation),
                      groups, threads)
    return y


def _winograd_grad_input(grad_y, weight, g: geo.ConvGeometry, threads):
    """The input gradient as a Winograd convolution of grad_y with the flipped weight (see
    _blocked_grad_input), padding 2 * dilation - padding."""
    grad_x = np.empty(g.input_shape, weight.dtype)
    d = g.dilation[0]
    return _winograd_conv(grad_y, _flipped(weight, g.groups), None, grad_x, 2 * d - g.padding[0],
                          2 * d - g.padding[2], d, g.groups, threads)


def _im2col_grad_weight(grad_y, x, g: geo.ConvGeometry, threads):
    """The weight gradient with _im2col: grad_y[block] @ cols(x[block])^T, summed."""
    images, band = im2col_blocks(g, x.itemsize, threads)
    width = images * band * g.out_w
    columns = _workspace("columns", threads, g.in_channels * g.kernel_h * g.kernel_w * width, x.dtype)
    gathered = _workspace("gathered", threads, g.out_channels * width if images > 1 else 1, x.dtype)
    partial = np.zeros((threads, g.out_channels, (g.in_channels // g.groups) * g.kernel_h * g.kernel_w),
                       x.dtype)
    _im2col.conv2d_grad_weight(x, grad_y.reshape(g.batch, g.out_channels, -1), partial, columns,
                               gathered, images, band, g.kernel_h, g.kernel_w, g.out_h, g.out_w,
                               *_loop_args(g), g.groups, threads)
    return partial.sum(axis=0).reshape(g.weight_shape)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto") -> np.ndarray:
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW images.

    input (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
    -> output (N, C_out, H_out, W_out), with
    ``y[n, co, i, j] = bias[co] + sum_{c,p,q} w[co, c, p, q] * x[n, g*C_in/groups + c,
    i*stride_h - pad_top + p*dilation_h, j*stride_w - pad_left + q*dilation_w]``.
    """
    x, weight, bias, g = geo.check_conv2d(input, weight, bias, stride, padding, dilation, groups)
    algorithm = _resolve(algorithm, g, "output", x.dtype)
    threads = get_num_threads()
    if algorithm == "direct":
        y = np.empty(g.output_shape, x.dtype)
        y[...] = 0 if bias is None else bias.reshape(1, -1, 1, 1)
        _conv_direct.conv2d_forward(x, weight, y, *_loop_args(g), g.groups, threads)
        return y
    if algorithm == "winograd":
        _check_winograd(g, "output")
        return _winograd_conv(x, weight, bias, np.empty(g.output_shape, x.dtype), g.padding[0],
                              g.padding[2], g.dilation[0], g.groups, threads)
    if algorithm == "blocked":
        _check_blocked(g, "output")
        return _blocked_conv(x, weight, bias, np.empty(g.output_shape, x.dtype), g.padding[0],
                             g.padding[2], g.stride, g.dilation, g.groups, threads)

    y = np.empty(g.output_shape, x.dtype)
    images, band = im2col_blocks(g, x.itemsize, threads)
    width = images * band * g.out_w
    columns = _workspace("columns", threads, g.in_channels * g.kernel_h * g.kernel_w * width, x.dtype)
    product = _workspace("product", threads, g.out_channels * width if images > 1 else 1, x.dtype)
    _im2col.conv2d_forward(x, weight.reshape(g.out_channels, -1),
                           bias if bias is not None else np.empty(0, x.dtype),
                           y.reshape(g.batch, g.out_channels, -1), columns, product, images, band,
                           g.kernel_h, g.kernel_w, g.out_h, g.out_w, *_loop_args(g), g.groups,
                           bias is not None, threads)
    return y


def conv2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, *, algorithm: str = "auto") -> np.ndarray:
    """Gradient of the loss w.r.t. the input of ``conv2d`` (like torch.nn.grad.conv2d_input).

    grad_output (N, C_out, H_out, W_out), weight (C_out, C_in/groups, kH, kW)
    -> grad_input of ``input_shape`` (N, C_in, H, W).
    """
    grad_y, weight, g = geo.check_conv2d_grad_input(grad_output, weight, input_shape, stride,
                                                    padding, dilation, groups)
    algorithm = _resolve(algorithm, g, "grad_input", weight.dtype)
    threads = get_num_threads()
    if algorithm in ("winograd", "blocked"):
        (_check_winograd if algorithm == "winograd" else _check_blocked)(g, "grad_input")
        if not np.isfinite(weight).all():
            # both convolve the zero-padded output gradient with the flipped weight, and
            # 0 * inf = NaN would land where the formula has no product: the matrix
            # products of im2col multiply only what the formula multiplies
            return _im2col_grad_input(grad_y, weight, g, threads)
        if algorithm == "winograd":
            return _winograd_grad_input(grad_y, weight, g, threads)
        return _blocked_grad_input(grad_y, weight, g, threads)
    if algorithm == "direct":
        grad_x = np.zeros(g.input_shape, weight.dtype)
        _conv_direct.conv2d_grad_input(grad_y, weight, grad_x, *_loop_args(g), g.groups, threads)
        return grad_x
    return _im2col_grad_input(grad_y, weight, g, threads)


def _im2col_grad_input(grad_y, weight, g: geo.ConvGeometry, threads):
    """The input gradient with _im2col: cols = w^T @ grad_y[block], added into the image."""
    grad_x = np.zeros(g.input_shape, weight.dtype)
    images, _ = im2col_blocks(g, weight.itemsize, threads, whole_images=True)
    width = images * g.out_h * g.out_w
    per_group = (g.in_channels // g.groups) * g.kernel_h * g.kernel_w
    columns = _workspace("grad_columns", threads, per_group * width, weight.dtype)
    gathered = _workspace("gathered", threads, (g.out_channels // g.groups) * width if images > 1 else 1,
                          weight.dtype)
    _im2col.conv2d_grad_input(grad_y.reshape(g.batch, g.out_channels, -1),
                              weight.reshape(g.out_channels, -1), grad_x, columns, gathered, images,
                              g.kernel_h, g.kernel_w, g.out_h, g.out_w, *_loop_args(g), g.groups,
                              threads)
    return grad_x


def conv2d_grad_weight(grad_output, input, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, *, algorithm: str = "auto") -> np.ndarray:
    """Gradient of the loss w.r.t. the weight of ``conv2d`` (like torch.nn.grad.conv2d_weight).

    grad_output (N, C_out, H_out, W_out), input (N, C_in, H, W)
    -> grad_weight of ``weight_shape`` (C_out, C_in/groups, kH, kW).
    """
    grad_y, x, g = geo.check_conv2d_grad_weight(grad_output, input, weight_shape, stride,
                                                padding, dilation, groups)
    algorithm = _resolve(algorithm, g, "grad_weight", x.dtype)
    threads = get_num_threads()
    if algorithm == "direct":
        grad_w = np.empty(g.weight_shape, x.dtype)
        _conv_direct.conv2d_grad_weight(grad_y, x, grad_w, *_loop_args(g), g.groups, threads)
        return grad_w
    if algorithm == "winograd":
        _check_winograd(g, "grad_weight")
    if algorithm == "blocked":
        _check_blocked(g, "grad_weight")
        return _blocked_grad_weight(grad_y, x, g, threads)

    return _im2col_grad_weight(grad_y, x, g, threads)


#: Values of the output gradient per thread below which the bias gradient, a sum over
#: channels, runs on fewer threads (threads_for). Measured on the project's 2-core machine,
#: 1 thread against 2: (64, 6, 24, 24), 2**17.8 values, 47 us against 74 us; (8, 64, 56, 56),
#: 2**20.6 values, 336 us against 215 us.
BIAS_GRAD_ITEMS_PER_THREAD = 2 ** 18


def conv2d_grad_bias(grad_output) -> np.ndarray:
    """Gradient w.r.t. the bias: grad_output (N, C_out, H_out, W_out) summed to (C_out,)."""
    grad_y = geo.as_float_array(grad_output, "grad_output", ndim=4)
    grad_b = np.empty(grad_y.shape[1], grad_y.dtype)
    _elementwise.channel_sums(grad_y.reshape(grad_y.shape[0], grad_y.shape[1], -1), grad_b,
                              threads_for(grad_y.size, BIAS_GRAD_ITEMS_PER_THREAD))
    return grad_b
