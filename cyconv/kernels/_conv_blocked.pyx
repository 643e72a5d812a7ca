# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution with register blocking: the fast path of "auto".

It computes the same sum as the loops of ``_conv_direct.pyx``,

    y[n, co, i, j] = bias[co] + sum over c, p, q of  w[co, c, p, q] * x[n, g*Cg + c, h, w]
    with h = i * stride_h - pad_top + p * dilation_h,  w = j * stride_w - pad_left + q * dilation_w,

but in an order a CPU likes:

1. the work is cut into tasks of one image, one group and a chunk of output rows; each
   task copies the input rows it reads, zero-padded, into a buffer of its own, so no loop
   below tests for the border. The buffer holds row 0 of every channel, then row 1 of
   every channel, ...: the few rows a tile reads lie close together in memory. (With a
   stride along the width, each row is stored as its stride_w phases, so that a tap reads
   neighbouring outputs' inputs side by side.)
2. the output is cut into tiles of TILE neighbouring columns of one row, one vector of the
   build: 16 floats where the compiler targets AVX-512, otherwise 8 (AVX). A tile of 4
   output channels x 3 rows (2 at the bottom of a plane; 6 in float32 with AVX-512, whose
   32 registers hold 24 accumulators; the channels left over when a group has fewer than
   4, or not a multiple of 4: 1 channel x 8 rows) is summed in 12 (or 8, or 24) local
   accumulators of TILE columns. In float32 the accumulators stay in vector registers for
   the whole sum over c, p, q, they do not wait on each other, and each input vector loaded
   feeds 4 of them. (In float64 an accumulator of 16 columns takes two AVX-512 registers:
   the 12 still fit in 32; with AVX2, or without AVX, they do not all fit in the registers:
   still correct, slower.) A row of tiles is summed a chunk of input channels at a time
   (each chunk adding to the sums so far), so that the chunk's rows stay in the L1 cache
   while all the tiles of the row read them. Where a row ends in TILE/2 or fewer columns
   past the last whole tile, those columns of two rows share one vector
   (tail_tile_channels), so that no half tile is wasted.

conv2d_forward_by_channels computes the same sum vectorised over output channels instead
(2 vectors of channels x 14 positions of a row, or x 8 for short rows, or 1 vector x 28
positions for groups of few channels), for rows whose width the column tiles fill badly.

The gradient of the weight uses the same padded buffer and tiles of TILE columns: 4 output
channels x 3 taps at once (x 6 taps in float32 with AVX-512; the channels left over: 1
channel x 4 taps x 2 rows), or, in conv2d_grad_weight_by_channels, vectors of TILE output
channels instead of columns (2 vectors x 12 taps, or 1 vector x 12 taps for groups of at
most TILE channels). The
gradient of the input is a convolution too (of the output gradient with the flipped
weight), so cyconv.kernels.conv runs it through ``conv2d_forward`` (or
``conv2d_forward_by_channels``) when the stride is 1 and the top and left padding are at
most dilation * (kernel - 1).

Column tiles that stick out past the right edge (or bottom row) of the output are computed
in full and written to a scratch tile, of which only the part inside is kept (the tiles over
output channels store only their positions inside, through masked stores). Before its sum,
a column tile asks for the cache lines of its output (prefetch for writing), so that its
stores at the end do not wait on memory. The arguments were checked in Python
(cyconv.kernels.conv); nothing is checked here but the pair of tile sizes
conv2d_forward_by_channels is given, once before its loops.
"""

from libc.string cimport memcpy, memset
from cython cimport floating
from cython.parallel cimport parallel, threadid

from ._threads cimport join_threads, new_team, share_start, share_stop, take_task, Team
from ._vectors cimport (CYCONV_VEC, axpyv, copyv, dotv, pairv, prefetch_for_write,
                       prefetch_for_read, store_transposed16)

cdef enum:
    TILE = CYCONV_VEC    # output columns per tile: one vector (16 floats with AVX-512, else 8)
    BLOCK = 4    # output channels (or rows, or weight taps) per tile


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for b > 0, and 0 for a <= 0."""
    return (a + b - 1) // b if a > 0 else 0


cdef void pad_rows(const floating[:, :, :, ::1] x, Py_ssize_t n, Py_ssize_t c0, Py_ssize_t count,
                   Py_ssize_t r0, Py_ssize_t rows, Py_ssize_t pad_top, Py_ssize_t pad_left,
                   Py_ssize_t stride_w, Py_ssize_t Wp, floating* padded) noexcept nogil:
    """Copy rows r0 .. r0+rows-1 of the zero-padded planes c0 .. c0+count-1 of image n into
    ``padded`` (rows, count, Wp): row by row, and within a row channel by channel.

    With stride 1: padded[r, c, s] = x[n, c0 + c, r0 + r - pad_top, s - pad_left], 0 outside x.
    With stride_w > 1, each padded row is stored as its stride_w phases one after the other
    (columns 0, s, 2s, ...; then 1, s+1, ...; each Wp / stride_w long), so that the columns
    one tap reads for neighbouring outputs, s apart in the image, are side by side here.
    The rows of all channels are interleaved so that the few rows a tile reads, for every
    channel, lie next to each other in memory. (The copy writes ``padded`` in the order it
    lies in memory, which was 2-3% faster on the forward pass of a 28x28 dilated layer than
    reading x plane by plane and writing rows 8 KiB apart one after another.)
    """
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], Wm = Wp // stride_w
    cdef Py_ssize_t lo = min(max(pad_left, 0), Wp)               # stride 1: first column inside x
    cdef Py_ssize_t hi = max(min(pad_left + W, Wp), lo)          # and one past the last
    cdef Py_ssize_t c, r, h, phase, m, m_lo, m_hi
    cdef floating* row
    cdef floating* dst
    cdef const floating* src
    memset(padded, 0, rows * count * Wp * sizeof(floating))     # zeros first, then the image
    for r in range(rows):
        h = r0 + r - pad_top
        if h < 0 or h >= H:
            continue
        for c in range(count):
            row = padded + (r * count + c) * Wp
            if stride_w == 1:
                memcpy(row + lo, &x[n, c0 + c, h, lo - pad_left], (hi - lo) * sizeof(floating))
                continue
            for phase in range(stride_w):
                # entry m of this phase is image column phase + m * stride_w - pad_left:
                # inside the image for m_lo <= m < m_hi
                m_lo = min(ceil_div(pad_left - phase, stride_w), Wm)
                m_hi = max(min(ceil_div(W + pad_left - phase, stride_w), Wm), m_lo)
                dst = row + phase * Wm + m_lo
                src = &x[n, c0 + c, h, phase + m_lo * stride_w - pad_left] if m_hi > m_lo else NULL
                if stride_w == 2:            # the common case, a constant step gcc vectorises
                    for m in range(m_hi - m_lo):
                        dst[m] = src[2 * m]
                else:
                    for m in range(m_hi - m_lo):
                        dst[m] = src[m * stride_w]


cdef inline void prefetch_rows(floating* y, Py_ssize_t rows, Py_ssize_t row_stride) noexcept nogil:
    """Ask for the cache lines of y[r * row_stride : r * row_stride + TILE] (r < rows), to
    be written: the tile's output, fetched while its sum runs, so that its stores do not wait
    on memory at the end. (A tile's row lies on one cache line or straddles two: both ends
    are asked for.)"""
    cdef Py_ssize_t r
    for r in range(rows):
        prefetch_for_write(y + r * row_stride)
        prefetch_for_write(y + r * row_stride + TILE - 1)


cdef inline void store_tiles(floating* acc, floating* y, Py_ssize_t count,
                             Py_ssize_t stride) noexcept nogil:
    """y[k * stride + jj] = acc[k * TILE + jj] for the first ``count`` accumulators."""
    cdef Py_ssize_t k, jj
    for k in range(count):
        for jj in range(TILE):
            y[k * stride + jj] = acc[k * TILE + jj]


cdef inline void start_tile(floating* acc, Py_ssize_t height, const floating* bias4, floating* y,
                            Py_ssize_t channel_stride, Py_ssize_t row_stride,
                            bint accumulate) noexcept nogil:
    """The accumulators of a tile of 4 channels x ``height`` rows, acc[(height*b + r) * TILE
    + jj]: the bias, or (accumulate) the sums of the channels before, read back from y."""
    cdef Py_ssize_t b, r, jj
    for b in range(BLOCK):
        if accumulate:
            for r in range(height):
                for jj in range(TILE):
                    acc[(height * b + r) * TILE + jj] = y[b * channel_stride + r * row_stride + jj]
        else:
            prefetch_rows(y + b * channel_stride, height, row_stride)
            for jj in range(height * TILE):
                acc[height * b * TILE + jj] = bias4[b]


cdef inline void tile_channels(const floating* xs, const floating* wb, Py_ssize_t taps,
                               const Py_ssize_t* offsets, Py_ssize_t next_row,
                               const floating* bias4, floating* y, Py_ssize_t channel_stride,
                               Py_ssize_t row_stride, bint accumulate) noexcept nogil:
    """4 output channels x 3 rows x TILE columns:

        y[b, r, jj] = bias4[b] + sum over taps k of wb[k, b] * xs[offsets[k] + r * next_row + jj]

    (with ``accumulate``, y[b, r, jj] + the sum instead: a later chunk of channels)

    xs: the padded input under tap 0 of the tile's first cell; offsets[k]: where tap
    k = (c*kH + p)*kW + q is from there; wb: the block's weights as (taps, 4). The 12
    accumulators are independent, so the multiply-adds do not wait on each other, and each
    input vector loaded feeds 4 of them.
    """
    cdef floating acc[3 * BLOCK * TILE]
    cdef Py_ssize_t k, b, jj
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    start_tile(acc, 3, bias4, y, channel_stride, row_stride, accumulate)
    for k in range(taps):
        x0 = xs + offsets[k]
        x1 = x0 + next_row
        x2 = x1 + next_row
        axpyv(&acc[0 * TILE], wb[0], x0)
        axpyv(&acc[1 * TILE], wb[0], x1)
        axpyv(&acc[2 * TILE], wb[0], x2)
        axpyv(&acc[3 * TILE], wb[1], x0)
        axpyv(&acc[4 * TILE], wb[1], x1)
        axpyv(&acc[5 * TILE], wb[1], x2)
        axpyv(&acc[6 * TILE], wb[2], x0)
        axpyv(&acc[7 * TILE], wb[2], x1)
        axpyv(&acc[8 * TILE], wb[2], x2)
        axpyv(&acc[9 * TILE], wb[3], x0)
        axpyv(&acc[10 * TILE], wb[3], x1)
        axpyv(&acc[11 * TILE], wb[3], x2)
        wb += BLOCK
    for b in range(BLOCK):
        store_tiles(&acc[3 * b * TILE], y + b * channel_stride, 3, row_stride)


cdef inline void tile_channels_2(const floating* xs, const floating* wb, Py_ssize_t taps,
                                 const Py_ssize_t* offsets, Py_ssize_t next_row,
                                 const floating* bias4, floating* y, Py_ssize_t channel_stride,
                                 Py_ssize_t row_stride, bint accumulate) noexcept nogil:
    """tile_channels with 2 rows instead of 3 (8 accumulators), for the last rows of a plane
    when their number is not a multiple of 3."""
    cdef floating acc[2 * BLOCK * TILE]
    cdef Py_ssize_t k, b, jj
    cdef const floating* x0
    cdef const floating* x1
    start_tile(acc, 2, bias4, y, channel_stride, row_stride, accumulate)
    for k in range(taps):
        x0 = xs + offsets[k]
        x1 = x0 + next_row
        axpyv(&acc[0 * TILE], wb[0], x0)
        axpyv(&acc[1 * TILE], wb[0], x1)
        axpyv(&acc[2 * TILE], wb[1], x0)
        axpyv(&acc[3 * TILE], wb[1], x1)
        axpyv(&acc[4 * TILE], wb[2], x0)
        axpyv(&acc[5 * TILE], wb[2], x1)
        axpyv(&acc[6 * TILE], wb[3], x0)
        axpyv(&acc[7 * TILE], wb[3], x1)
        wb += BLOCK
    for b in range(BLOCK):
        store_tiles(&acc[2 * b * TILE], y + b * channel_stride, 2, row_stride)


cdef inline void tile_channels_6(const floating* xs, const floating* wb, Py_ssize_t taps,
                                 const Py_ssize_t* offsets, Py_ssize_t next_row,
                                 const floating* bias4, floating* y, Py_ssize_t channel_stride,
                                 Py_ssize_t row_stride, bint accumulate) noexcept nogil:
    """tile_channels with 6 rows instead of 3 (24 accumulators), where the registers hold
    them (float32 with AVX-512: 32 vector registers): each input vector loaded still feeds
    4 accumulators, each weight 6, so fewer loads per multiply-add."""
    cdef floating acc[6 * BLOCK * TILE]
    cdef Py_ssize_t k, b, jj
    cdef const floating* x0
    start_tile(acc, 6, bias4, y, channel_stride, row_stride, accumulate)
    for k in range(taps):
        x0 = xs + offsets[k]
        axpyv(&acc[0 * TILE], wb[0], x0)
        axpyv(&acc[1 * TILE], wb[0], x0 + next_row)
        axpyv(&acc[2 * TILE], wb[0], x0 + 2 * next_row)
        axpyv(&acc[3 * TILE], wb[0], x0 + 3 * next_row)
        axpyv(&acc[4 * TILE], wb[0], x0 + 4 * next_row)
        axpyv(&acc[5 * TILE], wb[0], x0 + 5 * next_row)
        axpyv(&acc[6 * TILE], wb[1], x0)
        axpyv(&acc[7 * TILE], wb[1], x0 + next_row)
        axpyv(&acc[8 * TILE], wb[1], x0 + 2 * next_row)
        axpyv(&acc[9 * TILE], wb[1], x0 + 3 * next_row)
        axpyv(&acc[10 * TILE], wb[1], x0 + 4 * next_row)
        axpyv(&acc[11 * TILE], wb[1], x0 + 5 * next_row)
        axpyv(&acc[12 * TILE], wb[2], x0)
        axpyv(&acc[13 * TILE], wb[2], x0 + next_row)
        axpyv(&acc[14 * TILE], wb[2], x0 + 2 * next_row)
        axpyv(&acc[15 * TILE], wb[2], x0 + 3 * next_row)
        axpyv(&acc[16 * TILE], wb[2], x0 + 4 * next_row)
        axpyv(&acc[17 * TILE], wb[2], x0 + 5 * next_row)
        axpyv(&acc[18 * TILE], wb[3], x0)
        axpyv(&acc[19 * TILE], wb[3], x0 + next_row)
        axpyv(&acc[20 * TILE], wb[3], x0 + 2 * next_row)
        axpyv(&acc[21 * TILE], wb[3], x0 + 3 * next_row)
        axpyv(&acc[22 * TILE], wb[3], x0 + 4 * next_row)
        axpyv(&acc[23 * TILE], wb[3], x0 + 5 * next_row)
        wb += BLOCK
    for b in range(BLOCK):
        store_tiles(&acc[6 * b * TILE], y + b * channel_stride, 6, row_stride)


cdef inline void tail_tile_channels(const floating* xs, const floating* wb, Py_ssize_t taps,
                                    const Py_ssize_t* offsets, Py_ssize_t next_row,
                                    const floating* bias4, floating* scratch) noexcept nogil:
    """The last TILE/2 (or fewer) columns of 6 rows, for 4 output channels, in 12
    accumulators: rows 2r and 2r+1 share one, in the low and the high half of its lanes, so
    that a row length of k * TILE + TILE/2 wastes no half tile.
    scratch[(3*b + r) * TILE + lane]: channel b, rows 2r (the low half) and 2r+1.
    """
    cdef floating acc[3 * BLOCK * TILE]
    cdef floating v0[TILE]
    cdef floating v1[TILE]
    cdef floating v2[TILE]
    cdef Py_ssize_t k, b, jj
    cdef const floating* x0
    for b in range(BLOCK):
        for jj in range(3 * TILE):
            acc[3 * b * TILE + jj] = bias4[b]
    for k in range(taps):
        x0 = xs + offsets[k]
        pairv(v0, x0, x0 + next_row)
        pairv(v1, x0 + 2 * next_row, x0 + 3 * next_row)
        pairv(v2, x0 + 4 * next_row, x0 + 5 * next_row)
        axpyv(&acc[0 * TILE], wb[0], v0)
        axpyv(&acc[1 * TILE], wb[0], v1)
        axpyv(&acc[2 * TILE], wb[0], v2)
        axpyv(&acc[3 * TILE], wb[1], v0)
        axpyv(&acc[4 * TILE], wb[1], v1)
        axpyv(&acc[5 * TILE], wb[1], v2)
        axpyv(&acc[6 * TILE], wb[2], v0)
        axpyv(&acc[7 * TILE], wb[2], v1)
        axpyv(&acc[8 * TILE], wb[2], v2)
        axpyv(&acc[9 * TILE], wb[3], v0)
        axpyv(&acc[10 * TILE], wb[3], v1)
        axpyv(&acc[11 * TILE], wb[3], v2)
        wb += BLOCK
    store_tiles(acc, scratch, 3 * BLOCK, TILE)


cdef void channel_tiles(const floating* xs, const floating* wb, Py_ssize_t taps,
                        const Py_ssize_t* offsets, Py_ssize_t k0, Py_ssize_t k1,
                        Py_ssize_t next_row, const floating* bias4, floating* y, Py_ssize_t L,
                        Py_ssize_t W_out, Py_ssize_t height, Py_ssize_t rows,
                        floating* scratch) noexcept nogil:
    """A row of tiles of 4 output channels x ``height`` (2, 3 or 6) rows across the output
    width, summed over the taps k0 <= k < k1 of the ``taps`` (added to y unless k0 = 0).

    y: the output at the first row and column, channel planes L apart, rows W_out apart;
    only the first ``rows`` rows and W_out columns are kept. Tiles that stick out go through
    scratch, all taps at once, with the first range of taps (k0 = 0).
    """
    cdef Py_ssize_t tile, jt, b, width
    cdef Py_ssize_t tiles = W_out // TILE if W_out % TILE <= TILE // 2 else W_out // TILE + 1
    cdef const floating* wk = wb + k0 * BLOCK
    cdef const Py_ssize_t* ok = offsets + k0
    cdef bint more = k0 > 0
    for tile in range(tiles):        # (a tail of TILE/2 or fewer columns: tail_tile_channels)
        jt = tile * TILE
        width = min(TILE, W_out - jt)
        if width == TILE and rows == height:
            if height == 6:
                tile_channels_6(xs + jt, wk, k1 - k0, ok, next_row, bias4, y + jt, L, W_out, more)
            elif height == 3:
                tile_channels(xs + jt, wk, k1 - k0, ok, next_row, bias4, y + jt, L, W_out, more)
            else:
                tile_channels_2(xs + jt, wk, k1 - k0, ok, next_row, bias4, y + jt, L, W_out, more)
            continue
        if more:
            continue
        if height == 6:
            tile_channels_6(xs + jt, wb, taps, offsets, next_row, bias4, scratch, 6 * TILE, TILE,
                            False)
        elif height == 3:
            tile_channels(xs + jt, wb, taps, offsets, next_row, bias4, scratch, 3 * TILE, TILE,
                          False)
        else:
            tile_channels_2(xs + jt, wb, taps, offsets, next_row, bias4, scratch, 2 * TILE, TILE,
                            False)
        for b in range(BLOCK):                              # output channel b of the block
            keep_inside(scratch + b * height * TILE, y + jt + b * L, rows, W_out, width)


cdef inline void tile_rows(const floating* xs, const floating* w, Py_ssize_t taps,
                           const Py_ssize_t* offsets, Py_ssize_t next_row, floating bias,
                           floating* y, Py_ssize_t row_stride) noexcept nogil:
    """1 output channel x 8 rows x TILE columns:

        y[r, jj] = bias + sum over taps k of w[k] * xs[offsets[k] + r * next_row + jj]

    w: the channel's weights, one per tap.
    """
    cdef floating acc[2 * BLOCK * TILE]
    cdef Py_ssize_t k, jj
    cdef const floating* xv
    cdef floating tap
    prefetch_rows(y, 2 * BLOCK, row_stride)
    for jj in range(2 * BLOCK * TILE):
        acc[jj] = bias
    for k in range(taps):
        xv = xs + offsets[k]
        tap = w[k]
        axpyv(&acc[0 * TILE], tap, xv)
        axpyv(&acc[1 * TILE], tap, xv + next_row)
        axpyv(&acc[2 * TILE], tap, xv + 2 * next_row)
        axpyv(&acc[3 * TILE], tap, xv + 3 * next_row)
        axpyv(&acc[4 * TILE], tap, xv + 4 * next_row)
        axpyv(&acc[5 * TILE], tap, xv + 5 * next_row)
        axpyv(&acc[6 * TILE], tap, xv + 6 * next_row)
        axpyv(&acc[7 * TILE], tap, xv + 7 * next_row)
    store_tiles(acc, y, 2 * BLOCK, row_stride)


cdef inline void keep_inside(const floating* scratch, floating* y, Py_ssize_t rows,
                             Py_ssize_t row_stride, Py_ssize_t width) noexcept nogil:
    """Copy the first ``width`` columns of ``rows`` scratch tile rows to y (rows row_stride apart)."""
    cdef Py_ssize_t r, jj
    for r in range(rows):
        for jj in range(width):
            y[r * row_stride + jj] = scratch[r * TILE + jj]


cdef inline Py_ssize_t tile_rows_for(Py_ssize_t rows) noexcept nogil:
    """The output rows the tiles of a chunk of ``rows`` rows cover, stick-out rows included:
    ``rows`` rounded up to whole tiles of 6 and of 8 rows (conv._padded_size sizes the
    workspace with the same rule)."""
    return max((rows + 5) // 6 * 6, (rows + 7) // 8 * 8)


#: Output columns of one register tile (one vector), for the workspace sizes in conv.py.
TILE_COLUMNS = TILE


def pack_blocks(const floating[:, ::1] w_matrix, floating[:, :, :, ::1] w_blocks):
    """w_blocks[g, b, k, j] = w_matrix[g*out_g + width*b + j, k], width = w_blocks.shape[3]:
    each group's blocks of ``width`` output channels, their weights for tap k side by side
    (what the tiles broadcast, or load as vectors), 0 past the group's out_g channels.

    w_matrix (C_out, Cg*kH*kW); w_blocks (groups, blocks, Cg*kH*kW, width): the column tiles
    take the whole blocks of 4 channels, the tiles over output channels blocks of 1 or 2
    vectors.
    It transposes 16 channels x 16 taps at a time (store_transposed16; the taps left over
    one by one). (NumPy's copy of the same transposed view walks w_matrix with a large
    stride and took 50 us for a 64x64x3x3 weight; a loop over the values, 15 us; this, 9 us.)
    """
    cdef Py_ssize_t groups = w_blocks.shape[0], blocks = w_blocks.shape[1]
    cdef Py_ssize_t taps = w_blocks.shape[2], width = w_blocks.shape[3]
    cdef Py_ssize_t out_g = w_matrix.shape[0] // groups
    cdef Py_ssize_t g, b, k, k0, j, j0, count
    cdef const floating* rows
    cdef floating* block
    with nogil:
        for g in range(groups):
            for b in range(blocks):
                rows = &w_matrix[g * out_g + b * width, 0]   # the block's rows, taps apart
                block = &w_blocks[g, b, 0, 0]                # block[k * width + j]
                count = min(width, out_g - b * width)        # of the group's channels
                for j0 in range(0, count, 16):               # 16 channels x 16 taps at a time
                    for k0 in range(0, taps - 15, 16):
                        store_transposed16(rows + j0 * taps + k0, taps, min(16, count - j0),
                                           block + k0 * width + j0, width, 16)
                    for k in range(taps - taps % 16, taps):  # the last taps % 16 taps
                        for j in range(j0, min(j0 + 16, count)):
                            block[k * width + j] = rows[j * taps + k]
                for k in range(taps):                        # 0 past the group's channels
                    for j in range(count, width):
                        block[k * width + j] = 0


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w_blocks,
                   const floating[:, ::1] w_matrix, const floating[::1] bias,
                   const Py_ssize_t[::1] offsets, floating[:, :, :, ::1] y,
                   floating[:, ::1] padded, floating[:, ::1] scratch, Py_ssize_t chunk,
                   Py_ssize_t chunk_taps,
                   Py_ssize_t reach, Py_ssize_t Wp, Py_ssize_t stride_h, Py_ssize_t stride_w,
                   Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups, int num_threads):
    """y = conv2d(x, w) + bias; one (image, group, chunk of ``chunk`` output rows) per task.

    w_blocks (groups, out_g // 4, Cg*kH*kW, 4): the weights of each group's whole blocks of
    4 output channels, tap-major; w_matrix (C_out, Cg*kH*kW): all weights, for the channels
    left over. bias (C_out,) (zeros for none). offsets (Cg*kH*kW,): where tap
    (c*kH + p)*kW + q of output (0, 0) lies in the padded rows (see pad_rows).
    reach = dilation_h * (kH - 1) + 1: the input rows the taps of one output row span. A
    chunk whose tiles cover R output rows (tile_rows_for) reads (R - 1) * stride_h + reach
    padded rows of Cg * Wp values; padded (threads, that many for the largest chunk: see
    conv._padded_size, which must agree with tile_rows_for) and scratch (threads, 24 * TILE) are
    per-thread workspaces. Any ``chunk`` works; with a multiple of 24 (whole tiles of 3, 6
    and 8 rows) only the last chunk of a plane has tile rows sticking out. Each row of
    tiles is summed ``chunk_taps`` taps (whole input channels) at a time over all its
    blocks and tiles, each chunk adding to the sums of the one before, so that a chunk's
    input rows stay in the L1 cache while they are read again and again (the tiles that
    stick out, through scratch, sum all taps at once).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = y.shape[1], H_out = y.shape[2], W_out = y.shape[3]
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups, blocks = w_blocks.shape[1]
    cdef Py_ssize_t taps = offsets.shape[0], L = H_out * W_out, next_row = stride_h * Cg * Wp
    cdef Py_ssize_t chunks = (H_out + chunk - 1) // chunk
    cdef Py_ssize_t task, t, n, g, b, co, r, i, i0, end, tile, jt, width, rows, height, padded_rows
    cdef Py_ssize_t k, k0, k1
    cdef floating* buf
    cdef floating* tmp
    cdef floating* out
    cdef Team team = new_team()

    # the first chunks of all (image, group) pairs, then the second ones, ...: the last
    # chunk of a plane, often shorter, comes last, so the threads finish close together
    with nogil, parallel(num_threads=num_threads):
        while True:
            task = take_task(&team)
            if task >= N * groups * chunks:
                break
            n = (task % (N * groups)) // groups
            g = task % groups
            i0 = (task // (N * groups)) * chunk                # the chunk's output rows i0 .. end-1
            end = min(i0 + chunk, H_out)
            t = threadid()
            buf = &padded[t, 0]
            tmp = &scratch[t, 0]
            # the padded rows this chunk's tiles read (fewer in a short last chunk)
            padded_rows = (tile_rows_for(end - i0) - 1) * stride_h + reach
            pad_rows(x, n, g * Cg, Cg, i0 * stride_h, padded_rows, pad_top, pad_left, stride_w, Wp,
                     buf)
            # whole blocks of 4 output channels, 3 rows at a time (6 in float32 with AVX-512);
            # 2 rows for the last 1, 2 or 4
            i = i0                                             # i: first row of the tile
            while i < end:
                if floating is float and TILE == 16 and end - i >= 6:
                    height = 6
                else:
                    height = 2 if end - i in (1, 2, 4) else 3
                rows = min(height, end - i)
                for k in range((taps + chunk_taps - 1) // chunk_taps):
                    k0 = k * chunk_taps                        # the taps of a few channels at a
                    k1 = min(k0 + chunk_taps, taps)            # time, whose input rows stay in L1
                    for b in range(blocks):
                        co = g * out_g + b * BLOCK
                        channel_tiles(buf + (i - i0) * next_row, &w_blocks[g, b, 0, 0], taps,
                                      &offsets[0], k0, k1, next_row, &bias[co], &y[n, co, i, 0], L,
                                      W_out, height, rows, tmp)
                i = i + rows
            if 0 < W_out % TILE <= TILE // 2:                  # the last columns, 6 rows at a time
                jt = W_out - W_out % TILE
                for i in range(i0, end, 6):
                    rows = min(6, end - i)
                    for b in range(blocks):
                        co = g * out_g + b * BLOCK
                        tail_tile_channels(buf + (i - i0) * next_row + jt, &w_blocks[g, b, 0, 0],
                                           taps, &offsets[0], next_row, &bias[co], tmp)
                        for r in range(BLOCK * rows):          # channel r // rows, row r % rows
                            keep_inside(tmp + (3 * (r // rows) + (r % rows) // 2) * TILE
                                        + TILE // 2 * ((r % rows) % 2),
                                        &y[n, co + r // rows, i + r % rows, jt], 1, 0, W_out % TILE)
            # the channels left over (all of them when a group has fewer than 4), 8 rows at a time
            for co in range(g * out_g + blocks * BLOCK, (g + 1) * out_g):
                for i in range(i0, end, 8):
                    rows = min(2 * BLOCK, end - i)
                    for tile in range((W_out + TILE - 1) // TILE):
                        jt = tile * TILE
                        width = min(TILE, W_out - jt)
                        out = &y[n, co, i, jt]
                        if width == TILE and rows == 2 * BLOCK:
                            tile_rows(buf + (i - i0) * next_row + jt, &w_matrix[co, 0], taps,
                                      &offsets[0], next_row, bias[co], out, W_out)
                        else:
                            tile_rows(buf + (i - i0) * next_row + jt, &w_matrix[co, 0], taps,
                                      &offsets[0], next_row, bias[co], tmp, TILE)
                            keep_inside(tmp, out, rows, W_out, width)
        join_threads(&team)


cdef inline void tile_taps(const floating* gy, const floating* xs, Py_ssize_t row_pairs,
                           Py_ssize_t tiles, Py_ssize_t gy_row, Py_ssize_t next_row,
                           const Py_ssize_t* offsets, floating* sums) noexcept nogil:
    """sums[k] += sum over i, j of gy[i, j] * xs[offsets[k] + i*next_row + j], for 4 taps k.

    gy: one output-gradient plane, rows gy_row apart, zero past the last column and in the
    row after the last when the count is odd, so that ``row_pairs`` pairs of rows of
    ``tiles`` whole tiles of TILE columns cover it; xs: the padded input planes. Two rows at a time
    make 8 independent accumulators.
    """
    cdef floating acc[2 * BLOCK * TILE]
    cdef Py_ssize_t i, tile, jt, jj, k
    cdef const floating* g0
    cdef const floating* g1
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    cdef const floating* x3
    for jj in range(2 * BLOCK * TILE):
        acc[jj] = 0
    for i in range(0, 2 * row_pairs, 2):
        for tile in range(tiles):
            jt = tile * TILE
            g0 = gy + i * gy_row + jt
            g1 = g0 + gy_row
            x0 = xs + offsets[0] + i * next_row + jt
            x1 = xs + offsets[1] + i * next_row + jt
            x2 = xs + offsets[2] + i * next_row + jt
            x3 = xs + offsets[3] + i * next_row + jt
            dotv(&acc[0 * TILE], g0, x0)
            dotv(&acc[1 * TILE], g1, x0 + next_row)
            dotv(&acc[2 * TILE], g0, x1)
            dotv(&acc[3 * TILE], g1, x1 + next_row)
            dotv(&acc[4 * TILE], g0, x2)
            dotv(&acc[5 * TILE], g1, x2 + next_row)
            dotv(&acc[6 * TILE], g0, x3)
            dotv(&acc[7 * TILE], g1, x3 + next_row)
    for k in range(BLOCK):
        for jj in range(2 * TILE):
            sums[k] += acc[2 * k * TILE + jj]


cdef inline void tile_channel_taps(const floating* gy, Py_ssize_t gy_plane, const floating* xs,
                                   Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t tiles,
                                   Py_ssize_t gy_row, Py_ssize_t next_row,
                                   const Py_ssize_t* offsets, floating* lanes) noexcept nogil:
    """lanes[(3*b + k) * TILE + jj] += sum over rows i0 <= i < i1 and columns j = jj (mod
    TILE) of gy[b, i, j] * xs[offsets[k] + i*next_row + j], for 4 output channels b and 3
    taps k: 12 independent vector accumulators, each loaded vector feeding 3 or 4 of them.
    (The lanes are added up into the weight gradient once all rows are done.)

    gy: the 4 channels' output-gradient planes, gy_plane apart, rows gy_row apart, zero past
    the last column; xs: the padded input planes.
    """
    cdef floating acc[3 * BLOCK * TILE]
    cdef Py_ssize_t i, tile, jt, jj
    cdef const floating* g0
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    for jj in range(3 * BLOCK * TILE):
        acc[jj] = lanes[jj]
    for i in range(i0, i1):
        for tile in range(tiles):
            jt = tile * TILE
            g0 = gy + i * gy_row + jt
            x0 = xs + offsets[0] + i * next_row + jt
            x1 = xs + offsets[1] + i * next_row + jt
            x2 = xs + offsets[2] + i * next_row + jt
            dotv(&acc[0 * TILE], g0, x0)
            dotv(&acc[1 * TILE], g0, x1)
            dotv(&acc[2 * TILE], g0, x2)
            dotv(&acc[3 * TILE], g0 + gy_plane, x0)
            dotv(&acc[4 * TILE], g0 + gy_plane, x1)
            dotv(&acc[5 * TILE], g0 + gy_plane, x2)
            dotv(&acc[6 * TILE], g0 + 2 * gy_plane, x0)
            dotv(&acc[7 * TILE], g0 + 2 * gy_plane, x1)
            dotv(&acc[8 * TILE], g0 + 2 * gy_plane, x2)
            dotv(&acc[9 * TILE], g0 + 3 * gy_plane, x0)
            dotv(&acc[10 * TILE], g0 + 3 * gy_plane, x1)
            dotv(&acc[11 * TILE], g0 + 3 * gy_plane, x2)
    for jj in range(3 * BLOCK * TILE):
        lanes[jj] = acc[jj]


cdef inline void tile_channel_taps_6(const floating* gy, Py_ssize_t gy_plane, const floating* xs,
                                     Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t tiles,
                                     Py_ssize_t gy_row, Py_ssize_t next_row,
                                     const Py_ssize_t* offsets, floating* lanes) noexcept nogil:
    """tile_channel_taps with 6 taps instead of 3 (24 accumulators,
    lanes[(6*b + k) * TILE + jj]), where the registers hold them (float32 with AVX-512):
    each output-gradient vector loaded feeds 6 of them, each input vector 4."""
    cdef floating acc[6 * BLOCK * TILE]
    cdef Py_ssize_t i, tile, jt, jj, b, k
    cdef const floating* g0
    cdef const floating* xk[6]
    for jj in range(6 * BLOCK * TILE):
        acc[jj] = lanes[jj]
    for i in range(i0, i1):
        g0 = gy + i * gy_row
        for k in range(6):
            xk[k] = xs + offsets[k] + i * next_row
        for tile in range(tiles):
            jt = tile * TILE
            for b in range(BLOCK):
                dotv(&acc[(6 * b + 0) * TILE], g0 + b * gy_plane + jt, xk[0] + jt)
                dotv(&acc[(6 * b + 1) * TILE], g0 + b * gy_plane + jt, xk[1] + jt)
                dotv(&acc[(6 * b + 2) * TILE], g0 + b * gy_plane + jt, xk[2] + jt)
                dotv(&acc[(6 * b + 3) * TILE], g0 + b * gy_plane + jt, xk[3] + jt)
                dotv(&acc[(6 * b + 4) * TILE], g0 + b * gy_plane + jt, xk[4] + jt)
                dotv(&acc[(6 * b + 5) * TILE], g0 + b * gy_plane + jt, xk[5] + jt)
    for jj in range(6 * BLOCK * TILE):
        lanes[jj] = acc[jj]


def conv2d_grad_weight(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] grad_y,
                       floating[:, :, ::1] partial, floating[:, ::1] padded,
                       floating[:, ::1] gy_padded, floating[:, ::1] tap_lanes,
                       Py_ssize_t band, const Py_ssize_t[::1] tap_offsets,
                       Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups, int num_threads):
    """partial[t, co, k] += sum over n, i, j of grad_y[n, co, i, j] * padded x under tap k.

    The weight gradient summed over the (image, group) tasks thread t ran; the caller adds
    the threads up. Blocks of 4 output channels are summed 3 taps at a time, the channels
    left over 4 taps at a time (the blocks take 6 at a time in float32 with AVX-512). partial
    (threads, C_out, R + 5) must be zero on entry (its 5 extra columns take the taps of the
    last block that do not exist); tap_offsets (R + 5,) holds where tap
    k = (c*kH + p)*kW + q of output (0, 0) lies in the padded rows (see pad_rows; the 5
    extra ones repeat tap 0). padded
    (threads, Hp*Cg*Wp), gy_padded (threads, out_g * 2*ceil(H_out/2) * TILE*ceil(W_out/TILE))
    and tap_lanes (threads, ceil(R/6) * 24 * TILE: a block's vector sums before they are
    added up) are workspaces; the blocks of 4 channels go through the output rows ``band``
    rows at a time.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = grad_y.shape[1], H_out = grad_y.shape[2], W_out = grad_y.shape[3]
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups
    cdef Py_ssize_t R = partial.shape[2] - 5
    cdef Py_ssize_t tiles = (W_out + TILE - 1) // TILE, gy_row = tiles * TILE
    cdef Py_ssize_t row_pairs = (H_out + 1) // 2, gy_plane_size = 2 * row_pairs * gy_row
    cdef Py_ssize_t per = 6 if floating is float and TILE == 16 else 3    # taps per tile
    cdef Py_ssize_t tap_tiles = (R + per - 1) // per
    cdef Py_ssize_t task, t, n, g, co, i, k, b, q, jj
    cdef floating total
    cdef floating* buf
    cdef floating* gy
    cdef floating* gy_at
    cdef floating* lanes
    cdef floating* lane

    # static: every run hands the same tasks to the same thread, so the partial sums (and
    # the rounding of the gradient) are the same from run to run
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for task in range(share_start(N * groups), share_stop(N * groups)):
            n = task // groups
            g = task % groups
            t = threadid()
            buf = &padded[t, 0]
            gy = &gy_padded[t, 0]
            pad_rows(x, n, g * Cg, Cg, 0, Hp, pad_top, pad_left, stride_w, Wp, buf)
            for co in range(out_g):          # the group's output gradient, padded with zeros
                for i in range(2 * row_pairs):
                    gy_at = gy + co * gy_plane_size + i * gy_row
                    if i < H_out:
                        memcpy(gy_at, &grad_y[n, g * out_g + co, i, 0], W_out * sizeof(floating))
                        memset(gy_at + W_out, 0, (gy_row - W_out) * sizeof(floating))
                    else:
                        memset(gy_at, 0, gy_row * sizeof(floating))
            for co in range(0, out_g - out_g % 4, 4):          # channels co .. co+3
                # band by band of output rows, so that the band of the 4 channels' output
                # gradient stays in the L1 cache while every tap is summed over it
                lanes = &tap_lanes[t, 0]
                memset(lanes, 0, tap_tiles * per * BLOCK * TILE * sizeof(floating))
                for b in range((H_out + band - 1) // band):
                    i = b * band
                    for k in range(tap_tiles):                 # taps per*k .. per*k + per-1
                        if per == 6:
                            tile_channel_taps_6(gy + co * gy_plane_size, gy_plane_size, buf, i,
                                                min(i + band, H_out), tiles, gy_row,
                                                stride_h * Cg * Wp, &tap_offsets[6 * k],
                                                lanes + k * 6 * BLOCK * TILE)
                        else:
                            tile_channel_taps(gy + co * gy_plane_size, gy_plane_size, buf, i,
                                              min(i + band, H_out), tiles, gy_row, stride_h * Cg * Wp,
                                              &tap_offsets[3 * k], lanes + k * 3 * BLOCK * TILE)
                for k in range(tap_tiles):                     # the lanes added up
                    for b in range(BLOCK):
                        for q in range(per):
                            lane = lanes + (k * per * BLOCK + per * b + q) * TILE
                            total = 0
                            for jj in range(TILE):
                                total = total + lane[jj]
                            partial[t, g * out_g + co + b, per * k + q] += total
            for co in range(out_g - out_g % 4, out_g):         # the channels left over
                for k in range(0, R, 4):                       # taps k .. k+3
                    tile_taps(gy + co * gy_plane_size, buf, row_pairs, tiles, gy_row, stride_h * Cg * Wp,
                              &tap_offsets[k], &partial[t, g * out_g + co, k])
        join_threads(&team)


# --- the weight gradient vectorised over output channels -----------------------------------

cdef enum:
    TAPS = 12    # taps per register tile of conv2d_grad_weight_by_channels (conv.py: GRAD_WEIGHT_TAPS)


cdef inline void channel_tap_tile(const floating* gy_t, Py_ssize_t OP, const floating* xs,
                                  const Py_ssize_t* offsets, Py_ssize_t H_out, Py_ssize_t W_out,
                                  Py_ssize_t row_step, Py_ssize_t stride_w,
                                  floating* sums) noexcept nogil:
    """sums[(2*k + v) * TILE + l] = sum over i, j of gy_t[(i*W_out + j) * OP + v*TILE + l]
                                        * xs[offsets[k] + i*row_step + j*stride_w]

    for 12 taps k and 2 vectors v of output channels: 24 accumulators, each holding TILE
    output channels of one tap. At every output position the 2 vectors of the output
    gradient are loaded once and each of the 12 input values is broadcast to both, so the
    sum over all positions runs in registers (no lanes to add up at the end).
    """
    cdef floating acc[2 * TAPS * TILE]
    cdef Py_ssize_t i, j, jj
    cdef Py_ssize_t o0 = offsets[0], o1 = offsets[1], o2 = offsets[2], o3 = offsets[3]
    cdef Py_ssize_t o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7]
    cdef Py_ssize_t o8 = offsets[8], o9 = offsets[9], o10 = offsets[10], o11 = offsets[11]
    cdef const floating* g
    cdef const floating* xb
    for jj in range(2 * TAPS * TILE):
        acc[jj] = 0
    for i in range(H_out):
        g = gy_t + i * W_out * OP
        xb = xs + i * row_step
        for j in range(W_out):
            axpyv(&acc[0 * TILE], xb[o0], g)
            axpyv(&acc[1 * TILE], xb[o0], g + TILE)
            axpyv(&acc[2 * TILE], xb[o1], g)
            axpyv(&acc[3 * TILE], xb[o1], g + TILE)
            axpyv(&acc[4 * TILE], xb[o2], g)
            axpyv(&acc[5 * TILE], xb[o2], g + TILE)
            axpyv(&acc[6 * TILE], xb[o3], g)
            axpyv(&acc[7 * TILE], xb[o3], g + TILE)
            axpyv(&acc[8 * TILE], xb[o4], g)
            axpyv(&acc[9 * TILE], xb[o4], g + TILE)
            axpyv(&acc[10 * TILE], xb[o5], g)
            axpyv(&acc[11 * TILE], xb[o5], g + TILE)
            axpyv(&acc[12 * TILE], xb[o6], g)
            axpyv(&acc[13 * TILE], xb[o6], g + TILE)
            axpyv(&acc[14 * TILE], xb[o7], g)
            axpyv(&acc[15 * TILE], xb[o7], g + TILE)
            axpyv(&acc[16 * TILE], xb[o8], g)
            axpyv(&acc[17 * TILE], xb[o8], g + TILE)
            axpyv(&acc[18 * TILE], xb[o9], g)
            axpyv(&acc[19 * TILE], xb[o9], g + TILE)
            axpyv(&acc[20 * TILE], xb[o10], g)
            axpyv(&acc[21 * TILE], xb[o10], g + TILE)
            axpyv(&acc[22 * TILE], xb[o11], g)
            axpyv(&acc[23 * TILE], xb[o11], g + TILE)
            g = g + OP
            xb = xb + stride_w
    for jj in range(2 * TAPS * TILE):
        sums[jj] = acc[jj]


cdef inline void channel_tap_tile_one_vector(const floating* gy_t, const floating* xs,
                                             const Py_ssize_t* offsets, Py_ssize_t H_out,
                                             Py_ssize_t W_out, Py_ssize_t row_step,
                                             Py_ssize_t stride_w, floating* sums) noexcept nogil:
    """channel_tap_tile for 1 vector of output channels (groups of at most TILE channels,
    gy_t (H_out*W_out, TILE)):

        sums[k * TILE + l] = sum over i, j of gy_t[(i*W_out + j) * TILE + l]
                                              * xs[offsets[k] + i*row_step + j*stride_w]

    for 12 taps k. The positions of a row go two at a time, the even ones summed in 12
    accumulators and the odd ones in 12 others (added up at the end), so that 24 sums are
    under way at once, as in channel_tap_tile; each input value is broadcast to one
    multiply-add.
    """
    cdef floating acc[2 * TAPS * TILE]
    cdef Py_ssize_t i, j, jj, k
    cdef Py_ssize_t o0 = offsets[0], o1 = offsets[1], o2 = offsets[2], o3 = offsets[3]
    cdef Py_ssize_t o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7]
    cdef Py_ssize_t o8 = offsets[8], o9 = offsets[9], o10 = offsets[10], o11 = offsets[11]
    cdef const floating* g
    cdef const floating* x0
    cdef const floating* x1
    for jj in range(2 * TAPS * TILE):
        acc[jj] = 0
    for i in range(H_out):
        g = gy_t + i * W_out * TILE
        x0 = xs + i * row_step
        x1 = x0 + stride_w
        for j in range(W_out // 2):       # positions 2j (acc 0-11) and 2j+1 (acc 12-23)
            axpyv(&acc[0 * TILE], x0[o0], g)
            axpyv(&acc[12 * TILE], x1[o0], g + TILE)
            axpyv(&acc[1 * TILE], x0[o1], g)
            axpyv(&acc[13 * TILE], x1[o1], g + TILE)
            axpyv(&acc[2 * TILE], x0[o2], g)
            axpyv(&acc[14 * TILE], x1[o2], g + TILE)
            axpyv(&acc[3 * TILE], x0[o3], g)
            axpyv(&acc[15 * TILE], x1[o3], g + TILE)
            axpyv(&acc[4 * TILE], x0[o4], g)
            axpyv(&acc[16 * TILE], x1[o4], g + TILE)
            axpyv(&acc[5 * TILE], x0[o5], g)
            axpyv(&acc[17 * TILE], x1[o5], g + TILE)
            axpyv(&acc[6 * TILE], x0[o6], g)
            axpyv(&acc[18 * TILE], x1[o6], g + TILE)
            axpyv(&acc[7 * TILE], x0[o7], g)
            axpyv(&acc[19 * TILE], x1[o7], g + TILE)
            axpyv(&acc[8 * TILE], x0[o8], g)
            axpyv(&acc[20 * TILE], x1[o8], g + TILE)
            axpyv(&acc[9 * TILE], x0[o9], g)
            axpyv(&acc[21 * TILE], x1[o9], g + TILE)
            axpyv(&acc[10 * TILE], x0[o10], g)
            axpyv(&acc[22 * TILE], x1[o10], g + TILE)
            axpyv(&acc[11 * TILE], x0[o11], g)
            axpyv(&acc[23 * TILE], x1[o11], g + TILE)
            g = g + 2 * TILE
            x0 = x0 + 2 * stride_w
            x1 = x1 + 2 * stride_w
        if W_out % 2:                     # the last position of an odd row
            for k in range(TAPS):
                axpyv(&acc[k * TILE], x0[offsets[k]], g)
    for jj in range(TAPS * TILE):
        sums[jj] = acc[jj] + acc[TAPS * TILE + jj]


def conv2d_grad_weight_by_channels(
        const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] grad_y,
        floating[:, :, :, ::1] partial, floating[:, ::1] padded, floating[:, ::1] gy_t,
        floating[:, ::1] sums, const Py_ssize_t[::1] tap_offsets, Py_ssize_t Hp, Py_ssize_t Wp,
        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
        Py_ssize_t groups, int num_threads):
    """partial[t, g, k, c] += sum over n, i, j of grad_y[n, g*out_g + c, i, j] * x under tap
    k, over the (image, group) tasks thread t ran (the caller adds the threads up, and
    transposes).

    The same sum as conv2d_grad_weight, vectorised the other way round: over TILE output
    channels instead of TILE output columns (channel_tap_tile; channel_tap_tile_one_vector
    where OP = TILE). Each task copies its input planes, zero-padded, into padded (pad_rows
    with stride 1: (Hp, Cg, Wp), Hp and Wp exactly the rows and columns the taps read) and
    its output gradient, transposed to positions x channels, into its row of gy_t (threads,
    at least H_out*W_out*OP: positions x OP), OP = out_g rounded up to 2*TILE, or TILE where
    out_g <= TILE (the extra channels zero, and dropped). partial (threads, groups, R12, OP)
    with R12 = Cg*kH*kW rounded up to 12,
    zero on entry (tap-major, so that a tile's sums are added a vector at a time);
    tap_offsets (R12,): where tap k = (c*kH + p)*kW + q of output (0, 0) lies in padded
    (the taps past R repeat tap 0, and are dropped). sums (threads, 24 * TILE) is a
    workspace.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = grad_y.shape[1], H_out = grad_y.shape[2], W_out = grad_y.shape[3]
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups, HW = H_out * W_out
    cdef Py_ssize_t OP = partial.shape[3], R12 = tap_offsets.shape[0]
    cdef Py_ssize_t task, t, n, g, co, pos, p0, cb, kg, k, l
    cdef floating* buf
    cdef floating* gt
    cdef floating* s
    cdef floating* row

    # static: every run hands the same tasks to the same thread, so the partial sums (and
    # the rounding of the gradient) are the same from run to run
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for task in range(share_start(N * groups), share_stop(N * groups)):
            n = task // groups
            g = task % groups
            t = threadid()
            buf = &padded[t, 0]
            gt = &gy_t[t, 0]
            s = &sums[t, 0]
            pad_rows(x, n, g * Cg, Cg, 0, Hp, pad_top, pad_left, 1, Wp, buf)
            for p0 in range(0, HW, 16):       # gt[pos, co] = grad_y[n, g*out_g + co, pos]: 16
                for co in range(0, out_g, 16):   # channels x 16 positions at a time, transposed
                    if p0 + 16 <= HW:
                        store_transposed16(&grad_y[n, g * out_g + co, 0, 0] + p0, HW,
                                           min(16, out_g - co), gt + p0 * OP + co, OP, 16)
                    else:                     # the last positions of the plane, one at a time
                        for l in range(co, min(co + 16, out_g)):
                            for pos in range(p0, HW):
                                gt[pos * OP + l] = grad_y[n, g * out_g + l, pos // W_out, pos % W_out]
                if OP > out_g:
                    for pos in range(p0, min(p0 + 16, HW)):
                        memset(gt + pos * OP + out_g, 0, (OP - out_g) * sizeof(floating))
            if OP == TILE:                                     # one vector of channels
                for kg in range(R12 // TAPS):                  # taps 12*kg ...
                    channel_tap_tile_one_vector(gt, buf, &tap_offsets[kg * TAPS], H_out, W_out,
                                                stride_h * Cg * Wp, stride_w, s)
                    for k in range(TAPS):
                        row = &partial[t, g, kg * TAPS + k, 0]
                        for l in range(TILE):
                            row[l] += s[k * TILE + l]
                continue
            for cb in range(OP // (2 * TILE)):                 # channels 2*TILE*cb ...
                for kg in range(R12 // TAPS):                  # taps 12*kg ...
                    channel_tap_tile(gt + cb * 2 * TILE, OP, buf, &tap_offsets[kg * TAPS], H_out,
                                     W_out, stride_h * Cg * Wp, stride_w, s)
                    for k in range(TAPS):                      # s[(2*k + v) * TILE + l]: channel
                        row = &partial[t, g, kg * TAPS + k, cb * 2 * TILE]      # v * TILE + l
                        for l in range(2 * TILE):
                            row[l] += s[2 * k * TILE + l]
        join_threads(&team)


# --- the forward pass vectorised over output channels ---------------------------------------

cdef enum:
    POSITIONS = 14    # output positions (along a row) per register tile of
                      # conv2d_forward_by_channels (conv.py: CHANNEL_TILES)


cdef inline void channel_position_tile(const floating* xs, const floating* wt, Py_ssize_t taps,
                                       const Py_ssize_t* offsets, const floating* bias,
                                       floating* y, Py_ssize_t plane, Py_ssize_t channels,
                                       Py_ssize_t count, bint short_rows) noexcept nogil:
    """y[c * plane + p] = bias[c] + sum over taps k of wt[k, c] * xs[offsets[k] + p]

    for 14 output positions p along a row (8 with ``short_rows``: rows of 7, 8, 16, ...)
    and 2 vectors of output channels c < 2*TILE: 28 (16) accumulators, each holding TILE
    output channels of one position. Per tap, the 2 weight vectors are loaded once and each
    of the 14 (8) input values is broadcast to both. Only the first ``channels`` channels and
    ``count`` positions are written (output planes ``plane`` apart), each vector of channels
    through a transpose (store_transposed16), so that a plane receives its positions side
    by side. (The callers pass ``short_rows`` as a constant, so that the compiler makes a
    loop without the test of each kind.)"""
    cdef floating acc[2 * POSITIONS * TILE]
    cdef Py_ssize_t k, p
    cdef const floating* xk
    cdef const floating* w0
    for p in range(8 if short_rows else POSITIONS):    # vector by vector: unrolled, the
        copyv(&acc[2 * p * TILE], bias)                # accumulators start in registers
        copyv(&acc[(2 * p + 1) * TILE], bias + TILE)
    for k in range(taps):
        xk = xs + offsets[k]
        w0 = wt + k * 2 * TILE
        prefetch_for_read(w0 + 8 * 2 * TILE)          # the weights 8 taps on: with many
        prefetch_for_read(w0 + 8 * 2 * TILE + TILE)   # taps they come from L2 (1% faster)
        axpyv(&acc[0 * TILE], xk[0], w0)
        axpyv(&acc[1 * TILE], xk[0], w0 + TILE)
        axpyv(&acc[2 * TILE], xk[1], w0)
        axpyv(&acc[3 * TILE], xk[1], w0 + TILE)
        axpyv(&acc[4 * TILE], xk[2], w0)
        axpyv(&acc[5 * TILE], xk[2], w0 + TILE)
        axpyv(&acc[6 * TILE], xk[3], w0)
        axpyv(&acc[7 * TILE], xk[3], w0 + TILE)
        axpyv(&acc[8 * TILE], xk[4], w0)
        axpyv(&acc[9 * TILE], xk[4], w0 + TILE)
        axpyv(&acc[10 * TILE], xk[5], w0)
        axpyv(&acc[11 * TILE], xk[5], w0 + TILE)
        axpyv(&acc[12 * TILE], xk[6], w0)
        axpyv(&acc[13 * TILE], xk[6], w0 + TILE)
        axpyv(&acc[14 * TILE], xk[7], w0)
        axpyv(&acc[15 * TILE], xk[7], w0 + TILE)
        if short_rows:
            continue
        axpyv(&acc[16 * TILE], xk[8], w0)
        axpyv(&acc[17 * TILE], xk[8], w0 + TILE)
        axpyv(&acc[18 * TILE], xk[9], w0)
        axpyv(&acc[19 * TILE], xk[9], w0 + TILE)
        axpyv(&acc[20 * TILE], xk[10], w0)
        axpyv(&acc[21 * TILE], xk[10], w0 + TILE)
        axpyv(&acc[22 * TILE], xk[11], w0)
        axpyv(&acc[23 * TILE], xk[11], w0 + TILE)
        axpyv(&acc[24 * TILE], xk[12], w0)
        axpyv(&acc[25 * TILE], xk[12], w0 + TILE)
        axpyv(&acc[26 * TILE], xk[13], w0)
        axpyv(&acc[27 * TILE], xk[13], w0 + TILE)
    # acc[(2*p + v) * TILE + l] is channel v*TILE + l at position p
    store_transposed16(acc, 2 * TILE, count, y, plane, min(channels, TILE))
    if channels > TILE:
        store_transposed16(acc + TILE, 2 * TILE, count, y + TILE * plane, plane, channels - TILE)


cdef inline void channel_position_tile_28(const floating* xs, const floating* wt,
                                          Py_ssize_t taps, const Py_ssize_t* offsets,
                                          const floating* bias, floating* y, Py_ssize_t plane,
                                          Py_ssize_t channels, Py_ssize_t count) noexcept nogil:
    """channel_position_tile with 1 vector of output channels (c < TILE) x 28 positions,
    for groups of at most TILE output channels (grouped convolutions): the same 28
    accumulators, 1 weight vector and 28 input values a tap.

    y[c * plane + p] = bias[c] + sum over taps k of wt[k, c] * xs[offsets[k] + p]
    for c < ``channels`` and p < ``count``."""
    cdef floating acc[28 * TILE]
    cdef Py_ssize_t k, p
    cdef const floating* xk
    cdef const floating* w0
    for p in range(28):
        copyv(&acc[p * TILE], bias)
    for k in range(taps):
        xk = xs + offsets[k]
        w0 = wt + k * TILE
        prefetch_for_read(w0 + 16 * TILE)             # the weights 16 taps on
        axpyv(&acc[0 * TILE], xk[0], w0)
        axpyv(&acc[1 * TILE], xk[1], w0)
        axpyv(&acc[2 * TILE], xk[2], w0)
        axpyv(&acc[3 * TILE], xk[3], w0)
        axpyv(&acc[4 * TILE], xk[4], w0)
        axpyv(&acc[5 * TILE], xk[5], w0)
        axpyv(&acc[6 * TILE], xk[6], w0)
        axpyv(&acc[7 * TILE], xk[7], w0)
        axpyv(&acc[8 * TILE], xk[8], w0)
        axpyv(&acc[9 * TILE], xk[9], w0)
        axpyv(&acc[10 * TILE], xk[10], w0)
        axpyv(&acc[11 * TILE], xk[11], w0)
        axpyv(&acc[12 * TILE], xk[12], w0)
        axpyv(&acc[13 * TILE], xk[13], w0)
        axpyv(&acc[14 * TILE], xk[14], w0)
        axpyv(&acc[15 * TILE], xk[15], w0)
        axpyv(&acc[16 * TILE], xk[16], w0)
        axpyv(&acc[17 * TILE], xk[17], w0)
        axpyv(&acc[18 * TILE], xk[18], w0)
        axpyv(&acc[19 * TILE], xk[19], w0)
        axpyv(&acc[20 * TILE], xk[20], w0)
        axpyv(&acc[21 * TILE], xk[21], w0)
        axpyv(&acc[22 * TILE], xk[22], w0)
        axpyv(&acc[23 * TILE], xk[23], w0)
        axpyv(&acc[24 * TILE], xk[24], w0)
        axpyv(&acc[25 * TILE], xk[25], w0)
        axpyv(&acc[26 * TILE], xk[26], w0)
        axpyv(&acc[27 * TILE], xk[27], w0)
    # acc[p * TILE + c] is channel c at position p: positions 0-15, then 16-27
    store_transposed16(acc, TILE, min(count, 16), y, plane, channels)
    if count > 16:
        store_transposed16(acc + 16 * TILE, TILE, count - 16, y + 16, plane, channels)


def conv2d_forward_by_channels(
        const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w_t,
        const floating[:, ::1] bias_t, const Py_ssize_t[::1] offsets,
        floating[:, :, :, ::1] y, floating[:, ::1] padded, Py_ssize_t positions,
        Py_ssize_t chunk, Py_ssize_t reach, Py_ssize_t Wp, Py_ssize_t stride_h,
        Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups,
        int num_threads):
    """y = conv2d(x, w) + bias, vectorised over output channels, in register tiles of
    2 vectors of channels x 14 positions of a row (channel_position_tile), 2 x 8
    (``positions`` = 8: the same with short_rows) or 1 x 28 (``positions`` = 28:
    channel_position_tile_28); one (image, group, chunk of ``chunk`` output rows) per
    task. (With stride_w > 1 the padded rows hold their stride phases, see pad_rows, so
    that the inputs one tap reads for neighbouring positions still lie side by side.)

    w_t (groups, CB, Cg*kH*kW, B): each group's output channels in blocks of B = 2*TILE
    (TILE for 28 positions), tap-major, zero past the group's channels; bias_t
    (groups, CB * B) likewise. offsets: where tap (c*kH + p)*kW + q of output (0, 0) lies
    in the padded rows (pad_rows: (rows, Cg, Wp)); each phase of Wp covers whole tiles of
    ``positions``. padded (threads, ((chunk - 1) * stride_h + reach) * Cg * Wp) is a
    per-thread workspace.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = y.shape[1], H_out = y.shape[2], W_out = y.shape[3]
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups, CB = w_t.shape[1]
    cdef Py_ssize_t taps = offsets.shape[0], row_step = stride_h * Cg * Wp
    cdef Py_ssize_t chunks = (H_out + chunk - 1) // chunk
    cdef Py_ssize_t block = w_t.shape[3]                 # output channels per tile
    cdef Py_ssize_t task, t, n, g, i0, end, i, cb, jt, j0, count, width
    cdef floating* buf
    # the one check made here (not in the loops): a tile reads w_t's blocks as its vectors
    # and stores exactly its own accumulators, so a wrong pair would read and write astray
    if (positions, block) not in ((14, 2 * TILE), (8, 2 * TILE), (28, TILE)):
        raise ValueError(f"positions and w_t.shape[3] must be (14, {2 * TILE}), "
                         f"(8, {2 * TILE}) or (28, {TILE}), got ({positions}, {block})")

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        while True:
            task = take_task(&team)
            if task >= N * groups * chunks:
                break
            n = (task % (N * groups)) // groups
            g = task % groups
            i0 = (task // (N * groups)) * chunk
            end = min(i0 + chunk, H_out)
            t = threadid()
            buf = &padded[t, 0]
            pad_rows(x, n, g * Cg, Cg, i0 * stride_h, (end - i0 - 1) * stride_h + reach, pad_top,
                     pad_left, stride_w, Wp, buf)
            for i in range(i0, end):
                for cb in range(CB):
                    width = min(block, out_g - cb * block)
                    for jt in range((W_out + positions - 1) // positions):
                        j0 = jt * positions
                        count = min(positions, W_out - j0)
                        if positions == 8:
                            channel_position_tile(
                                buf + (i - i0) * row_step + j0, &w_t[g, cb, 0, 0], taps,
                                &offsets[0], &bias_t[g, cb * block],
                                &y[n, g * out_g + cb * block, i, j0], H_out * W_out, width, count,
                                True)
                        elif positions == 28:
                            channel_position_tile_28(
                                buf + (i - i0) * row_step + j0, &w_t[g, cb, 0, 0], taps,
                                &offsets[0], &bias_t[g, cb * block],
                                &y[n, g * out_g + cb * block, i, j0], H_out * W_out, width, count)
                        else:
                            channel_position_tile(
                                buf + (i - i0) * row_step + j0, &w_t[g, cb, 0, 0], taps,
                                &offsets[0], &bias_t[g, cb * block],
                                &y[n, g * out_g + cb * block, i, j0], H_out * W_out, width, count,
                                False)
        join_threads(&team)


# --- depthwise convolution: one input channel per output channel -----------------------------

cdef enum:
    DEPTHWISE_ROWS = 4    # output rows per register tile of conv2d_forward_depthwise


cdef inline void depthwise_tile(const floating* src, Py_ssize_t Wp, const floating* w,
                                Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t dilation_h,
                                Py_ssize_t dilation_w, floating bias, floating* out,
                                Py_ssize_t rows, Py_ssize_t W_out) noexcept nogil:
    """out[r * W_out + j] = bias + sum over p, q of w[p*kW + q] * src[(r + p*dh) * Wp +
    q*dw + j] for r < rows (<= 4) and j < W_out: 4 rows x 2 vectors of TILE columns at a
    time, in 8 accumulators that do not wait on each other (one alone would wait for the
    multiply-add before it at every tap). It reads 4 rows of src, to the end of the last
    pair of vectors."""
    cdef floating acc[DEPTHWISE_ROWS * 2 * TILE]
    cdef Py_ssize_t j0 = 0, p, q, r, l
    cdef const floating* s
    cdef floating weight
    while j0 < W_out:
        for l in range(DEPTHWISE_ROWS * 2 * TILE):
            acc[l] = bias
        for p in range(kH):
            for q in range(kW):
                weight = w[p * kW + q]
                s = src + p * dilation_h * Wp + q * dilation_w + j0
                axpyv(&acc[0 * TILE], weight, s)
                axpyv(&acc[1 * TILE], weight, s + TILE)
                axpyv(&acc[2 * TILE], weight, s + Wp)
                axpyv(&acc[3 * TILE], weight, s + Wp + TILE)
                axpyv(&acc[4 * TILE], weight, s + 2 * Wp)
                axpyv(&acc[5 * TILE], weight, s + 2 * Wp + TILE)
                axpyv(&acc[6 * TILE], weight, s + 3 * Wp)
                axpyv(&acc[7 * TILE], weight, s + 3 * Wp + TILE)
        for r in range(rows):
            for l in range(min(2 * <Py_ssize_t>TILE, W_out - j0)):
                out[r * W_out + j0 + l] = acc[2 * r * TILE + l]
        j0 = j0 + 2 * TILE


def conv2d_forward_depthwise(const floating[:, :, :, ::1] x, const floating[:, ::1] w,
                             const floating[::1] bias, floating[:, :, :, ::1] y,
                             floating[:, ::1] padded, Py_ssize_t kH, Py_ssize_t kW,
                             Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t dilation_h,
                             Py_ssize_t dilation_w, int num_threads):
    """y[n, c, i, j] = bias[c] + sum over p, q of w[c, p*kW + q] * xp[n, c, i + p*dh, j + q*dw]

    for a depthwise convolution with stride 1 (groups = channels, one filter each), xp the
    input zero-padded (pad_top rows above, pad_left columns on the left). One plane per task:
    it is copied, zero-padded, into the thread's row of ``padded`` (pad_rows: Hp rows of Wp,
    Hp = H_out rounded up to 4 + dh*(kH-1), Wp = W_out rounded up to pairs of vectors of
    TILE + dw*(kW-1); see depthwise_padded_size), in the L1 cache for the small planes it is
    meant for; then the output is summed in register tiles of 4 rows x 2 vectors
    (depthwise_tile). (The tiles of the other kernels share each input between output
    channels; here there is only one.)
    """
    cdef Py_ssize_t N = y.shape[0], C = y.shape[1], H_out = y.shape[2], W_out = y.shape[3]
    cdef Py_ssize_t Hp = depthwise_padded_rows(H_out, kH, dilation_h)
    cdef Py_ssize_t Wp = depthwise_padded_width(W_out, kW, dilation_w)
    cdef Py_ssize_t plane, n, c, i
    cdef floating* buf
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for plane in range(share_start(N * C), share_stop(N * C)):
            n = plane // C
            c = plane % C
            buf = &padded[threadid(), 0]
            pad_rows(x, n, c, 1, 0, Hp, pad_top, pad_left, 1, Wp, buf)
            for i in range((H_out + DEPTHWISE_ROWS - 1) // DEPTHWISE_ROWS):   # tiles of 4 rows
                depthwise_tile(buf + i * DEPTHWISE_ROWS * Wp, Wp, &w[c, 0], kH, kW, dilation_h,
                               dilation_w, bias[c], &y[n, c, i * DEPTHWISE_ROWS, 0],
                               min(<Py_ssize_t>DEPTHWISE_ROWS, H_out - i * DEPTHWISE_ROWS), W_out)
        join_threads(&team)


cdef enum:
    DEPTHWISE_GRAD_TAPS = 9    # taps summed at once by depthwise_grad_tile (a 3x3 kernel's)

#: Taps the depthwise weight gradient sums at once, for the size of its lanes in conv.py.
DEPTHWISE_GRAD_TAP_COUNT = DEPTHWISE_GRAD_TAPS


cdef inline void copy_values(floating* dst, const floating* src, Py_ssize_t count) noexcept nogil:
    """dst[j] = src[j] for j < count, in vectors: the last one ends at count and may overlap
    the one before (rows shorter than a vector go value by value). For rows of a few dozen
    values, a call of memcpy costs more than the copy."""
    cdef Py_ssize_t j = 0
    if count < TILE:
        for j in range(count):
            dst[j] = src[j]
        return
    while j + TILE < count:
        copyv(dst + j, src + j)
        j = j + TILE
    copyv(dst + count - TILE, src + count - TILE)


cdef inline void depthwise_grad_tile(const floating* gy, Py_ssize_t rows, Py_ssize_t vectors,
                                     const floating* src, Py_ssize_t Wp, Py_ssize_t k0,
                                     Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t dilation_h,
                                     Py_ssize_t dilation_w, floating* sums) noexcept nogil:
    """sums[k * TILE + l] += sum over i < rows, v < vectors of
    gy[(i * vectors + v) * TILE + l] * src[offsets[k] + i * Wp + v * TILE + l] for the 9
    taps k0 + k = p*kW + q, offsets[k] = p*dh*Wp + q*dw: each vector of the output gradient
    is loaded once for 9 multiply-adds, one for each tap, into 9 accumulators (the taps past
    kH*kW read offset 0, and the caller throws their sums away)."""
    cdef floating acc[DEPTHWISE_GRAD_TAPS * TILE]
    cdef Py_ssize_t offsets[DEPTHWISE_GRAD_TAPS]
    cdef Py_ssize_t i, v, k, p = k0 // kW, q = k0 % kW
    cdef const floating* g
    cdef const floating* x
    for k in range(DEPTHWISE_GRAD_TAPS):
        offsets[k] = p * dilation_h * Wp + q * dilation_w if p < kH else 0
        q = q + 1                        # the next tap, row by row
        if q == kW:
            q = 0
            p = p + 1
        copyv(&acc[k * TILE], sums + k * TILE)
    for i in range(rows):
        for v in range(vectors):
            g = gy + (i * vectors + v) * TILE
            x = src + i * Wp + v * TILE
            dotv(&acc[0 * TILE], g, x + offsets[0])
            dotv(&acc[1 * TILE], g, x + offsets[1])
            dotv(&acc[2 * TILE], g, x + offsets[2])
            dotv(&acc[3 * TILE], g, x + offsets[3])
            dotv(&acc[4 * TILE], g, x + offsets[4])
            dotv(&acc[5 * TILE], g, x + offsets[5])
            dotv(&acc[6 * TILE], g, x + offsets[6])
            dotv(&acc[7 * TILE], g, x + offsets[7])
            dotv(&acc[8 * TILE], g, x + offsets[8])
    for k in range(DEPTHWISE_GRAD_TAPS):
        copyv(sums + k * TILE, &acc[k * TILE])


def conv2d_grad_weight_depthwise(const floating[:, :, :, ::1] x,
                                 const floating[:, :, :, ::1] grad_y, floating[:, ::1] grad_w,
                                 floating[:, ::1] padded, floating[:, ::1] gy_rows,
                                 floating[:, ::1] lanes, Py_ssize_t kH, Py_ssize_t kW,
                                 Py_ssize_t pad_top,
                                 Py_ssize_t pad_left, Py_ssize_t dilation_h,
                                 Py_ssize_t dilation_w, int num_threads):
    """grad_w[c, p*kW + q] = sum over n, i, j of grad_y[n, c, i, j]
                                                 * xp[n, c, i + p*dh, j + q*dw]

    for a depthwise convolution with stride 1 (groups = channels, one filter each), xp the
    input zero-padded (pad_top rows above, pad_left columns on the left). One channel per
    task, image after image: its plane copied into the thread's row of ``padded`` (Hp x Wp,
    as conv2d_forward_depthwise pads it), its output gradient into ``gy_rows`` (rows of whole
    vectors), both zeroed once per task (each image then overwrites the same values inside,
    and the zeros around them stay), then depthwise_grad_tile sums 9 taps at a time over
    the plane in vector lanes (``lanes``: 9 * TILE per thread), added up at the end.
    padded (threads, depthwise_padded_size(...)), gy_rows (threads, H_out * W_out rounded
    up to whole vectors); grad_w (C, kH*kW). (Each channel is one thread's from start to
    end: the same sums in the same order on any number of threads.)
    """
    cdef Py_ssize_t N = grad_y.shape[0], C = grad_y.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t H_out = grad_y.shape[2], W_out = grad_y.shape[3]
    cdef Py_ssize_t Hp = depthwise_padded_rows(H_out, kH, dilation_h)
    cdef Py_ssize_t Wp = depthwise_padded_width(W_out, kW, dilation_w)
    cdef Py_ssize_t vectors = (W_out + TILE - 1) // TILE, taps = kH * kW
    cdef Py_ssize_t c, n, i, chunk, k0, k, l, t
    cdef floating* buf
    cdef floating* gy
    cdef floating* sums
    cdef floating total
    # the one check made here (not in the loops): the tiles sum 9 taps into a thread's lanes
    if lanes.shape[1] < DEPTHWISE_GRAD_TAPS * TILE:
        raise ValueError(f"lanes needs {DEPTHWISE_GRAD_TAPS * TILE} values a thread, "
                         f"got {lanes.shape[1]}")
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for c in range(share_start(C), share_stop(C)):
            t = threadid()
            buf = &padded[t, 0]
            gy = &gy_rows[t, 0]
            sums = &lanes[t, 0]
            memset(buf, 0, Hp * Wp * sizeof(floating))
            memset(gy, 0, H_out * vectors * TILE * sizeof(floating))
            for chunk in range((taps + DEPTHWISE_GRAD_TAPS - 1) // DEPTHWISE_GRAD_TAPS):
                k0 = chunk * DEPTHWISE_GRAD_TAPS              # taps k0 .. k0 + 8
                memset(sums, 0, DEPTHWISE_GRAD_TAPS * TILE * sizeof(floating))
                for n in range(N):
                    for i in range(H):       # the rows inside, where the padding puts them
                        copy_values(buf + (i + pad_top) * Wp + pad_left, &x[n, c, i, 0], W)
                    for i in range(H_out):
                        copy_values(gy + i * vectors * TILE, &grad_y[n, c, i, 0], W_out)
                    depthwise_grad_tile(gy, H_out, vectors, buf, Wp, k0, kH, kW, dilation_h,
                                        dilation_w, sums)
                for k in range(min(DEPTHWISE_GRAD_TAPS, taps - k0)):
                    total = 0
                    for l in range(TILE):
                        total = total + sums[k * TILE + l]
                    grad_w[c, k0 + k] = total
        join_threads(&team)


cdef inline Py_ssize_t depthwise_padded_rows(Py_ssize_t H_out, Py_ssize_t kH,
                                             Py_ssize_t dilation_h) noexcept nogil:
    """Hp: the rows the tiles of 4 output rows read, H_out rounded up to 4 + dh*(kH-1)."""
    return (H_out + DEPTHWISE_ROWS - 1) // DEPTHWISE_ROWS * DEPTHWISE_ROWS + dilation_h * (kH - 1)


cdef inline Py_ssize_t depthwise_padded_width(Py_ssize_t W_out, Py_ssize_t kW,
                                              Py_ssize_t dilation_w) noexcept nogil:
    """Wp: the columns the pairs of vectors read, W_out rounded up to 2*TILE + dw*(kW-1)."""
    return (W_out + 2 * TILE - 1) // (2 * TILE) * (2 * TILE) + dilation_w * (kW - 1)


def depthwise_padded_size(Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t kH, Py_ssize_t kW,
                          Py_ssize_t dilation_h, Py_ssize_t dilation_w):
    """Values of one thread's row of conv2d_forward_depthwise's ``padded``: Hp x Wp."""
    return (depthwise_padded_rows(H_out, kH, dilation_h)
            * depthwise_padded_width(W_out, kW, dilation_w))
