# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Winograd convolution F(2x2, 3x3): 3x3 kernels, stride 1, dilation 1 or 2, with 2.25x fewer
multiplications.

A 3x3 convolution makes each 2x2 block of outputs (a "tile") from the 4x4 block of inputs
under it. The minimal filtering algorithm of Winograd, as Lavin and Gray apply it to
convolutional networks ("Fast Algorithms for Convolutional Neural Networks", CVPR 2016),
computes a tile as

    Y = A^T [ sum over c of U_c * V_c ] A         (* multiplies 4x4 matrices elementwise)
    with U_c = G g_c G^T (the 3x3 filter of channel c)  and  V_c = B^T d_c B (its 4x4 inputs)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

For each of the 16 positions e of the 4x4 block, the sum over c is a matrix product,
M[e] (out channels x tiles) = U[e] (out channels x Cg) @ V[e] (Cg x tiles): 16 products of
Cg multiply-adds make 4 outputs, 4 * Cg per output instead of the direct sum's 9 * Cg.
(The adds of the transforms are cheap beside them when there are many channels.)

transform_weights computes U for every filter; conv2d_forward does the rest, in tasks of
T tiles of one group (the tiles of all images of the batch, numbered row by row, image
after image), each thread in buffers of its own small enough for its L2 cache:

1. transform_input: V (16, Cg, T), the transformed input blocks of the task's tiles,
   channel by channel, 8 neighbouring tiles of a row at a time, read straight from the
   input rows and split into even and odd columns in vector registers (input_tiles).
   (Splitting each row into a buffer first, one value at a time where the padding made
   the columns odd, took 1.2-1.5x as long; a copy of the whole split input made before
   the tasks, as large as the input, was 5-16% slower still: it went out to memory and
   came back.)
2. multiply_block: M (16, out channels, T), 4 output channels x SPAN tiles at a time, in
   12 vector accumulators (the register tile of _conv_blocked, with tiles in place of
   columns): SPAN = 3 vectors of the build, 48 tiles with AVX-512, otherwise 24;
3. transform_output: Y = A^T M A + bias, of which the part inside the output is written.

With dilation d, a tile's 2x2 outputs lie d apart, and its 4x4 inputs too: the same
formulas apply to them. With d = 2 the tiles go in pairs, covering 4x4 outputs between
them: tile columns 0 and 1 take output columns (0, 2) and (1, 3), tile columns 2 and 3
take (4, 6) and (5, 7), and so on (tile_start), so that 8 neighbouring tiles still cover
16 neighbouring output columns and read 20 neighbouring input columns; other shuffles
pick their inputs out of the rows (input_tiles), and another interleaves their outputs
(store_row). (The other way, the undilated kernel on the input's four phase images, every
other row and column, copied out and back in NumPy, took 1.55x the blocked kernel's time
on the dilated benchmark layer, 0.95x without the copies; this kernel takes 0.80x.)

The transforms round differently from the direct sum (within a few float32 ulps of the
sum's size), and a NaN or an inf spreads to the whole tile that reads it; the kernel
reports a non-finite output, and cyconv.kernels.conv then runs the direct sum instead.
The arguments were checked in Python; nothing is checked here.
"""

from libc.string cimport memcpy, memset
from cython cimport floating
from cython.parallel cimport parallel, threadid

from ._threads cimport join_threads, new_team, share_start, share_stop, take_task, Team
from ._vectors cimport (CYCONV_VEC, add8, axpy8, axpyv, copyv, prefetch_for_write, sub8, zerov,
                       zip8)

# V = B^T d B for 8 neighbouring tiles at once, d read straight from 4 input rows. Dilation
# 1: one row's tiles m = 0..7 take columns 2m .. 2m+3 of it, so column k of all 8 blocks is
# every other value of row[k:], which two loads of 8 values split into even and odd lanes
# give (row[0:16] -> columns 0 and 1, row[2:18] -> columns 2 and 3). Dilation 2: the same
# with pairs of lanes (row[0:16] and row[4:20], see CYCONV_WINOGRAD_ROW_DILATED). Everything
# stays in vector registers; out[e * plane + m] receives position e of tile m.
cdef extern from *:
    """
    typedef float cyconv_wf8 __attribute__((vector_size(32), aligned(4), may_alias));
    typedef double cyconv_wd8 __attribute__((vector_size(64), aligned(8), may_alias));
    /* d B for one row of the 8 blocks: columns 0 and 1 (FIRST and SECOND lanes of p[0:16])
       and columns 2 and 3 (the same lanes of p[SHIFT:SHIFT + 16]) */
    #define CYCONV_WINOGRAD_ROW_BY(V, p, SHIFT, FIRST, SECOND, a0, a1, a2, a3) do { \
        V lo_ = *(const V*)(p), hi_ = *(const V*)((p) + 8); \
        V lo2_ = *(const V*)((p) + SHIFT), hi2_ = *(const V*)((p) + SHIFT + 8); \
        V c0_ = __builtin_shufflevector(lo_, hi_, FIRST); \
        V c1_ = __builtin_shufflevector(lo_, hi_, SECOND); \
        V c2_ = __builtin_shufflevector(lo2_, hi2_, FIRST); \
        V c3_ = __builtin_shufflevector(lo2_, hi2_, SECOND); \
        a0 = c0_ - c2_; a1 = c1_ + c2_; a2 = c2_ - c1_; a3 = c1_ - c3_; } while (0)
    #define CYCONV_EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14
    #define CYCONV_ODD_LANES 1, 3, 5, 7, 9, 11, 13, 15
    #define CYCONV_WINOGRAD_ROW(V, p, a0, a1, a2, a3) \
        CYCONV_WINOGRAD_ROW_BY(V, p, 2, CYCONV_EVEN_LANES, CYCONV_ODD_LANES, a0, a1, a2, a3)
    /* dilation 2: the 8 tiles take columns o, o + 2, o + 4, o + 6 with o = 0, 1, 4, 5, 8, 9,
       12, 13 (tiles in pairs, see tile_start): pairs of values, from row[0:16] and row[4:20] */
    #define CYCONV_FIRST_PAIRS 0, 1, 4, 5, 8, 9, 12, 13
    #define CYCONV_SECOND_PAIRS 2, 3, 6, 7, 10, 11, 14, 15
    #define CYCONV_WINOGRAD_ROW_DILATED(V, p, a0, a1, a2, a3) \
        CYCONV_WINOGRAD_ROW_BY(V, p, 4, CYCONV_FIRST_PAIRS, CYCONV_SECOND_PAIRS, a0, a1, a2, a3)
    /* not inlined: inlined into transform_input's loops, the rows' vectors went through
       the stack, and the kernel took 1.03-1.05x as long on 64 channels (56x56, 28x28
       images), about as long on 32 */
    #define CYCONV_DEFINE_WINOGRAD_INPUT(NAME, T, V, ROW) \
    static __attribute__((noinline)) void NAME(const T* p0, const T* p1, const T* p2, \
                                               const T* p3, T* out, Py_ssize_t plane) { \
        V a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3; \
        ROW(V, p0, a0, a1, a2, a3);                    /* d B, row by row */ \
        ROW(V, p1, b0, b1, b2, b3); \
        ROW(V, p2, c0, c1, c2, c3); \
        ROW(V, p3, d0, d1, d2, d3); \
        *(V*)(out) = a0 - c0;                          /* B^T (d B), on the columns */ \
        *(V*)(out + plane) = a1 - c1; \
        *(V*)(out + 2 * plane) = a2 - c2; \
        *(V*)(out + 3 * plane) = a3 - c3; \
        *(V*)(out + 4 * plane) = b0 + c0; \
        *(V*)(out + 5 * plane) = b1 + c1; \
        *(V*)(out + 6 * plane) = b2 + c2; \
        *(V*)(out + 7 * plane) = b3 + c3; \
        *(V*)(out + 8 * plane) = c0 - b0; \
        *(V*)(out + 9 * plane) = c1 - b1; \
        *(V*)(out + 10 * plane) = c2 - b2; \
        *(V*)(out + 11 * plane) = c3 - b3; \
        *(V*)(out + 12 * plane) = b0 - d0; \
        *(V*)(out + 13 * plane) = b1 - d1; \
        *(V*)(out + 14 * plane) = b2 - d2; \
        *(V*)(out + 15 * plane) = b3 - d3; }
    CYCONV_DEFINE_WINOGRAD_INPUT(cyconv_winograd_input_float, float, cyconv_wf8, CYCONV_WINOGRAD_ROW)
    CYCONV_DEFINE_WINOGRAD_INPUT(cyconv_winograd_input_double, double, cyconv_wd8, CYCONV_WINOGRAD_ROW)
    CYCONV_DEFINE_WINOGRAD_INPUT(cyconv_winograd_input_dilated_float, float, cyconv_wf8,
                                 CYCONV_WINOGRAD_ROW_DILATED)
    CYCONV_DEFINE_WINOGRAD_INPUT(cyconv_winograd_input_dilated_double, double, cyconv_wd8,
                                 CYCONV_WINOGRAD_ROW_DILATED)
    #define CYCONV_DEFINE_WINOGRAD_INPUT_D(NAME, T, UNDILATED, DILATED) \
    static inline void NAME(const T* p0, const T* p1, const T* p2, const T* p3, T* out, \
                            Py_ssize_t plane, Py_ssize_t d) { \
        if (d == 1) UNDILATED(p0, p1, p2, p3, out, plane); \
        else DILATED(p0, p1, p2, p3, out, plane); }
    CYCONV_DEFINE_WINOGRAD_INPUT_D(cyconv_winograd_input_d_float, float,
                                   cyconv_winograd_input_float, cyconv_winograd_input_dilated_float)
    CYCONV_DEFINE_WINOGRAD_INPUT_D(cyconv_winograd_input_d_double, double,
                                   cyconv_winograd_input_double,
                                   cyconv_winograd_input_dilated_double)
    /* dst[0:16] = a0 a1 b0 b1 a2 a3 b2 b3 ... a6 a7 b6 b7: the outputs of 8 tiles with
       dilation 2, a (b) their first (second) column */
    #define CYCONV_DEFINE_ZIP_PAIRS(NAME, T, V) \
    static inline void NAME(T* dst, const T* a, const T* b) { \
        V a_ = *(const V*)(a), b_ = *(const V*)(b); \
        *(V*)(dst) = __builtin_shufflevector(a_, b_, 0, 1, 8, 9, 2, 3, 10, 11); \
        *(V*)(dst + 8) = __builtin_shufflevector(a_, b_, 4, 5, 12, 13, 6, 7, 14, 15); }
    CYCONV_DEFINE_ZIP_PAIRS(cyconv_zip_pairs_float, float, cyconv_wf8)
    CYCONV_DEFINE_ZIP_PAIRS(cyconv_zip_pairs_double, double, cyconv_wd8)
    """
    void input_tiles_float "cyconv_winograd_input_d_float"(
        const float* p0, const float* p1, const float* p2, const float* p3, float* out,
        Py_ssize_t plane, Py_ssize_t d) noexcept nogil
    void input_tiles_double "cyconv_winograd_input_d_double"(
        const double* p0, const double* p1, const double* p2, const double* p3, double* out,
        Py_ssize_t plane, Py_ssize_t d) noexcept nogil
    void zip_pairs_float "cyconv_zip_pairs_float"(float* dst, const float* a,
                                                  const float* b) noexcept nogil
    void zip_pairs_double "cyconv_zip_pairs_double"(double* dst, const double* a,
                                                    const double* b) noexcept nogil

cdef enum:
    TILE = 8     # tiles per vector of the transforms
    VEC = CYCONV_VEC    # tiles per vector of the products: 16 with AVX-512, else 8
    BLOCK = 4    # output channels per register tile
    SPAN = 3 * CYCONV_VEC    # tiles per register tile: 3 vectors
    SKEW = 16    # room between two positions e of V (or M): see plane_size


cdef inline Py_ssize_t plane_size(Py_ssize_t rows, Py_ssize_t S) noexcept nogil:
    """How far apart the 16 positions e of V (rows = Cg) or M (rows = Kp) lie: rows * S
    values and a cache line or two more. (Without them, with 64 channels the 16 planes
    would lie 8 KiB apart, and the 16 streams the transforms read or write at once would
    all fall in the same few sets of the L1 cache, evicting each other.)"""
    return rows * S + SKEW


cdef inline (Py_ssize_t, Py_ssize_t, Py_ssize_t) tile_position(
        Py_ssize_t s, Py_ssize_t TH, Py_ssize_t TW) noexcept nogil:
    """(image, tile row, tile column) of tile s: the tiles of a group are numbered row by
    row, image after image, TH rows of TW tiles each."""
    return s // (TH * TW), s // TW % TH, s % TW


cdef inline Py_ssize_t tile_start(Py_ssize_t t, Py_ssize_t d) noexcept nogil:
    """The first output row (or column) of tile row (or column) t; the tile's second is d
    further. Dilation 1: 2t. Dilation 2: the tiles go in pairs, t and t + 1 (t even) taking
    rows 4(t // 2) + 0, 2 and 4(t // 2) + 1, 3 between them. (2d * (t // d) + t % d, written
    without a division by d: one would cost as much as a tenth of input_tiles.)"""
    if d == 1:
        return 2 * t
    return 4 * (t // 2) + t % 2


cdef inline Py_ssize_t tiles_along(Py_ssize_t size, Py_ssize_t d) noexcept nogil:
    """Tile rows (or columns) over ``size`` output rows (or columns), dilation d (1 or 2):
    d * ceil(size / 2d). (With dilation 2 the last pair may reach past the output.)"""
    return d * ((size + 2 * d - 1) // (2 * d))


cdef enum:
    READ = 2 * TILE + 4    # input columns under 8 neighbouring tiles, 2 * TILE + 2 * dilation,
                           # at most (dilation 2): the size of the edge buffers


cdef inline void input_tiles(const floating* p0, const floating* p1, const floating* p2,
                             const floating* p3, floating* out, Py_ssize_t plane,
                             Py_ssize_t d) noexcept nogil:
    """out[e * plane + m] = (B^T d B)[e // 4, e % 4] for 8 tiles m, whose blocks d have rows
    p[o:o + 4d:d] of p0, p1, p2 and p3, o = tile_start(m, d) (2 * TILE + 2d values read
    from each)."""
    if floating is float:
        input_tiles_float(p0, p1, p2, p3, out, plane, d)
    else:
        input_tiles_double(p0, p1, p2, p3, out, plane, d)


cdef inline const floating* padded_columns(const floating* row, Py_ssize_t W, Py_ssize_t w,
                                           Py_ssize_t read, const floating* zeros,
                                           floating* edge) noexcept nogil:
    """Where to read row[w:w + read] of a row of W values (row NULL: a row of padding),
    zeros outside it: the row itself when all ``read`` columns lie inside, else ``edge``,
    filled with them (``zeros``: READ zeros, for a row of padding)."""
    cdef Py_ssize_t k
    if row == NULL:
        return zeros
    if 0 <= w and w + read <= W:
        return row + w
    for k in range(read):
        edge[k] = row[w + k] if 0 <= w + k < W else 0
    return edge


cdef inline void transform_filter(const floating* f, floating* u0, Py_ssize_t e_stride) noexcept nogil:
    """u0[e * e_stride] = (G f G^T)[e // 4, e % 4] for one 3x3 filter f (row-major)."""
    cdef floating gw[4][3]               # G f: the filter's 3 columns, transformed
    cdef Py_ssize_t p, i
    # G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], on the rows
    for p in range(3):
        gw[0][p] = f[p]
        gw[1][p] = (f[p] + f[3 + p] + f[6 + p]) / 2
        gw[2][p] = (f[p] - f[3 + p] + f[6 + p]) / 2
        gw[3][p] = f[6 + p]
    for i in range(4):                   # ... and G^T on the columns
        u0[(4 * i + 0) * e_stride] = gw[i][0]
        u0[(4 * i + 1) * e_stride] = (gw[i][0] + gw[i][1] + gw[i][2]) / 2
        u0[(4 * i + 2) * e_stride] = (gw[i][0] - gw[i][1] + gw[i][2]) / 2
        u0[(4 * i + 3) * e_stride] = gw[i][2]


cdef void transform_block(const floating[:, :, :, ::1] w, floating[:, :, :, :, ::1] u,
                          Py_ssize_t g, Py_ssize_t kb, Py_ssize_t out_g) noexcept nogil:
    """u[g, e, kb, c, b] for every channel c and the filters b < 4 of block kb of group g
    (0 for those past out_g), 16 channels at a time: transformed into a local buffer, then
    copied to the 16 planes e as runs of 16 x 4 values."""
    cdef floating buf[16 * 16 * BLOCK]   # buf[e * 64 + c * 4 + b] for 16 channels
    cdef Py_ssize_t Cg = w.shape[1], filters = min(BLOCK, out_g - kb * BLOCK)
    cdef Py_ssize_t c0, c, b, e, count
    memset(buf, 0, sizeof(buf))          # the padding filters stay 0
    for c0 in range(0, Cg, 16):
        count = min(16, Cg - c0)
        for c in range(count):
            for b in range(filters):
                transform_filter(&w[g * out_g + kb * BLOCK + b, c0 + c, 0, 0],
                                 &buf[c * BLOCK + b], 16 * BLOCK)
        for e in range(16):
            memcpy(&u[g, e, kb, c0, 0], &buf[e * 16 * BLOCK], count * BLOCK * sizeof(floating))


def transform_weights(const floating[:, :, :, ::1] w, floating[:, :, :, :, ::1] u,
                      int num_threads=1):
    """u[g, e, kb, c, b] = (G w[co, c] G^T)[e // 4, e % 4] with co = g*out_g + 4*kb + b (0 for
    the padding channels co >= (g + 1)*out_g): every 3x3 filter transformed, packed as
    conv2d_forward reads it. w (C_out, Cg, 3, 3); u (groups, 16, Kp // 4, Cg, 4).

    One task per (group, block of 4 output channels), on ``num_threads`` threads
    (transform_block). (Written filter by filter, the 16 values of each land in 16 planes
    whose distance is often a multiple of 4 KiB, all in one set of the L1 cache: the loop
    took 0.19 ms for a 64x64x3x3 weight.)
    """
    cdef Py_ssize_t groups = u.shape[0], blocks = u.shape[2]
    cdef Py_ssize_t out_g = w.shape[0] // groups, task
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for task in range(share_start(groups * blocks), share_stop(groups * blocks)):
            transform_block(w, u, task // blocks, task % blocks, out_g)
        join_threads(&team)


cdef inline void input_row(const floating* r0, const floating* r1, const floating* r2,
                           const floating* r3, Py_ssize_t W, Py_ssize_t tj0, Py_ssize_t seg,
                           Py_ssize_t pad_left, const floating* zeros, floating* edge,
                           floating* out, Py_ssize_t plane, Py_ssize_t d) noexcept nogil:
    """out[e * plane + m] = (B^T d B)[e // 4, e % 4] for the tiles tj0 + m, m < seg (and
    up to 7 more), of a row of tiles over the input rows r0 .. r3 (NULL: padding), 8 at a
    time (input_tiles, padded_columns; edge: room for 4 * READ values)."""
    cdef Py_ssize_t m, w, read = 2 * TILE + 2 * d
    for m in range(0, seg, 8):
        w = tile_start(tj0 + m, d) - pad_left               # the first column under tile m
        input_tiles(padded_columns(r0, W, w, read, zeros, edge),
                    padded_columns(r1, W, w, read, zeros, edge + READ),
                    padded_columns(r2, W, w, read, zeros, edge + 2 * READ),
                    padded_columns(r3, W, w, read, zeros, edge + 3 * READ),
                    out + m, plane, d)


cdef void transform_input(const floating[:, :, :, ::1] x, Py_ssize_t c0, Py_ssize_t Cg,
                          Py_ssize_t first, Py_ssize_t count, Py_ssize_t TH, Py_ssize_t TW,
                          Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t d, floating* v,
                          Py_ssize_t T, Py_ssize_t S) noexcept nogil:
    """v[e * plane_size(Cg, S) + c * S + t] = (B^T d B)[e // 4, e % 4] for tiles first + t
    (t < count) of channels c0 .. c0 + Cg - 1 of x; zero for count <= t < T. (S >= T + 8:
    room for the last vector of 8 tiles to stick out.)

    Tile s is (image s // (TH*TW), tile row s // TW % TH, tile column s % TW); its block d
    holds the rows tile_start(row) + d*k and the columns tile_start(column) + d*k, k < 4, of
    the input padded with zeros (pad_top rows above, pad_left columns on the left), for
    dilation d. 8 neighbouring tiles of a row are transformed at once (input_tiles),
    straight from the 4 input rows under them; only where their columns reach into the
    padding are those first copied, with the zeros, into a small buffer (padded_columns).
    (With dilation 2 a row's tiles start at an even tile: T and TW are even.)
    """
    cdef floating zeros[READ]
    cdef floating edge[4 * READ]
    cdef const floating* src[4]
    cdef Py_ssize_t plane = plane_size(Cg, S), t = 0, n, ti, tj0, seg, c, r, m, e, h
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    for m in range(READ):
        zeros[m] = 0
    for c in range(Cg):                   # channel by channel: V[e, c] is written in order
        n, ti, tj0 = tile_position(first, TH, TW)
        t = 0
        while t < count:                  # one row of tiles (or the part of it in the task)
            seg = min(TW - tj0, count - t)
            for r in range(4):           # the 4 input rows under the row of tiles, or NULL
                h = tile_start(ti, d) + d * r - pad_top
                src[r] = &x[n, c0 + c, h, 0] if 0 <= h < H else NULL
            if d == 1:                    # d a constant in each: a loop made for each
                input_row(src[0], src[1], src[2], src[3], W, tj0, seg, pad_left, zeros, edge,
                          v + c * S + t, plane, 1)
            else:
                input_row(src[0], src[1], src[2], src[3], W, tj0, seg, pad_left, zeros, edge,
                          v + c * S + t, plane, 2)
            t = t + seg
            tj0 = 0                       # the next row of tiles (of the next image)
            ti = ti + 1
            if ti == TH:
                ti = 0
                n = n + 1
    if count < T:                         # the last task's missing tiles: zeros
        for e in range(16):
            for c in range(Cg):
                memset(v + e * plane + c * S + count, 0, (T - count) * sizeof(floating))


cdef inline void multiply_block(const floating* u, const floating* v, Py_ssize_t Cg,
                                Py_ssize_t S, floating* m) noexcept nogil:
    """m[b * S + s] = sum over c of u[4c + b] * v[c * S + s], for 4 output channels b and
    SPAN tiles s: one register tile of the products M[e] = U[e] @ V[e].

    u: the 4 channels' transformed weights at one position e, (Cg, 4); v: the transformed
    inputs at e, rows of S values. The 12 accumulators (4 channels x 3 vectors of tiles) are
    independent, and each vector of v loaded feeds 4 of them.
    """
    cdef floating acc[BLOCK * SPAN]      # acc[b * SPAN + k * VEC]: channel b, vector k of tiles
    cdef Py_ssize_t c, jj
    cdef const floating* v0
    for jj in range(BLOCK * SPAN // VEC):    # vector by vector: the compiler keeps them in
        zerov(&acc[jj * VEC])                # registers (a loop of values made it call memset)
    for c in range(Cg):
        v0 = v + c * S
        axpyv(&acc[0 * VEC], u[0], v0)
        axpyv(&acc[1 * VEC], u[0], v0 + VEC)
        axpyv(&acc[2 * VEC], u[0], v0 + 2 * VEC)
        axpyv(&acc[3 * VEC], u[1], v0)
        axpyv(&acc[4 * VEC], u[1], v0 + VEC)
        axpyv(&acc[5 * VEC], u[1], v0 + 2 * VEC)
        axpyv(&acc[6 * VEC], u[2], v0)
        axpyv(&acc[7 * VEC], u[2], v0 + VEC)
        axpyv(&acc[8 * VEC], u[2], v0 + 2 * VEC)
        axpyv(&acc[9 * VEC], u[3], v0)
        axpyv(&acc[10 * VEC], u[3], v0 + VEC)
        axpyv(&acc[11 * VEC], u[3], v0 + 2 * VEC)
        u += BLOCK
    for jj in range(BLOCK * SPAN // VEC):    # channel jj // 3, vector jj % 3
        copyv(m + jj // (SPAN // VEC) * S + jj % (SPAN // VEC) * VEC, &acc[jj * VEC])


cdef inline void prefetch_output(floating* row, Py_ssize_t count,
                                 Py_ssize_t next_row) noexcept nogil:
    """Ask for the cache lines of row[0:count] and of (next_row > 0) row[next_row:next_row +
    count], to be written: fetched while the channel before is computed, so that the
    stores do not wait on memory."""
    cdef Py_ssize_t j = 0, line = 64 // sizeof(floating)
    while j < count + line:
        prefetch_for_write(row + min(j, count - 1))
        if next_row > 0:
            prefetch_for_write(row + next_row + min(j, count - 1))
        j = j + line


cdef inline void zip_pairs(floating* dst, const floating* a, const floating* b) noexcept nogil:
    """dst[4j + k] = a[2j + k] and dst[4j + 2 + k] = b[2j + k] for j < 4, k < 2."""
    if floating is float:
        zip_pairs_float(dst, a, b)
    else:
        zip_pairs_double(dst, a, b)


cdef inline void store_row(floating* row, Py_ssize_t W_out, const floating* ya,
                           const floating* yb, Py_ssize_t tj0, Py_ssize_t seg,
                           Py_ssize_t d) noexcept nogil:
    """row[o] = ya[m] and row[o + d] = yb[m], o = tile_start(tj0 + m, d), for the tiles
    m < seg, where inside the row of W_out values: 8 tiles at a time in vector registers
    (their 16 columns side by side), one value at a time at the row's end."""
    cdef Py_ssize_t o = tile_start(tj0, d), whole, m, last
    if d == 1:                           # even, odd, even, ... columns
        whole = min(seg, (W_out - o) // 2)                 # tiles with both columns inside
        last = whole - whole % 8
        for m in range(0, last, 8):
            zip8(row + o + 2 * m, ya + m, yb + m)
    else:                                # tiles in pairs: 2 first columns, 2 second ones, ...
        last = min(seg // 8, (W_out - o) // 16) * 8
        for m in range(0, last, 8):
            zip_pairs(row + o + 2 * m, ya + m, yb + m)
    for m in range(last, seg):
        o = tile_start(tj0 + m, d)
        if o < W_out:
            row[o] = ya[m]
        if o + d < W_out:
            row[o + d] = yb[m]


cdef bint transform_output(const floating* mbuf, Py_ssize_t Kp, Py_ssize_t S,
                           Py_ssize_t first, Py_ssize_t count, Py_ssize_t TH, Py_ssize_t TW,
                           Py_ssize_t d, const floating* bias, floating[:, :, :, ::1] y,
                           Py_ssize_t co0, Py_ssize_t out_g, floating* tmp,
                           Py_ssize_t RW) noexcept nogil:
    """y[n, co0 + k, r + d*a, o + d*b] = (A^T M A)[a, b] + bias[k], r and o the tile_start
    of the tile's row and column (dilation d), for the tiles first + t (t < count) and
    k < out_g, where inside y.
    M[e, k, t] = mbuf[e*plane_size(Kp, S) + k*S + t],
    finite up to t < S (the vectors of 8 tiles read past count). tmp: room for 4 * RW
    values. Returns whether a written value is an inf or a NaN.
    """
    cdef floating q[8 * TILE]            # A^T M for 8 tiles: q[(4*row + column) * 8 + tile]
    cdef floating b[TILE]                # the bias, in every lane
    cdef floating probe[TILE]            # sum of 0 * output: NaN after an inf or a NaN
    cdef Py_ssize_t H_out = y.shape[2], W_out = y.shape[3], plane = plane_size(Kp, S)
    cdef Py_ssize_t t = 0, n, ti, tj0, seg, k, m, j, i, r, rows
    cdef floating* ya
    cdef floating* yb
    cdef const floating* p
    cdef const floating* qi
    for j in range(TILE):
        probe[j] = 0
    while t < count:                      # one row of tiles (or the part of it in the task)
        n, ti, tj0 = tile_position(first + t, TH, TW)
        seg = min(TW - tj0, count - t)
        r = tile_start(ti, d)
        rows = (r < H_out) + (r + d < H_out)   # the tile rows' output rows inside y
        for k in range(out_g if rows > 0 else 0):
            if k + 1 < out_g:            # the next channel's output lines, to be written
                prefetch_output(&y[n, co0 + k + 1, r, tile_start(tj0, d)], 2 * seg,
                                d * W_out if rows == 2 else 0)
            for j in range(TILE):
                b[j] = bias[k]
            for m in range(0, seg, 8):
                p = mbuf + k * S + t + m
                for j in range(4):       # A^T M, column by column: (m0 + m1 + m2, m1 - m2 - m3)
                    add8(&q[j * TILE], p + j * plane, p + (4 + j) * plane)
                    add8(&q[j * TILE], &q[j * TILE], p + (8 + j) * plane)
                    sub8(&q[(4 + j) * TILE], p + (4 + j) * plane, p + (8 + j) * plane)
                    sub8(&q[(4 + j) * TILE], &q[(4 + j) * TILE], p + (12 + j) * plane)
                for i in range(2):       # (A^T M) A, row by row, the same on the columns, + bias
                    qi = &q[4 * i * TILE]
                    ya = tmp + 2 * i * RW + m                  # output row i, first columns
                    yb = ya + RW                               # and second columns
                    add8(ya, qi, qi + TILE)
                    add8(ya, ya, qi + 2 * TILE)
                    add8(ya, ya, b)
                    sub8(yb, qi + TILE, qi + 2 * TILE)
                    sub8(yb, yb, qi + 3 * TILE)
                    add8(yb, yb, b)
                    axpy8(probe, 0, ya)
                    axpy8(probe, 0, yb)
            for i in range(rows):
                if d == 1:               # d a constant in each: a loop made for each
                    store_row(&y[n, co0 + k, r + i, 0], W_out, tmp + 2 * i * RW,
                              tmp + (2 * i + 1) * RW, tj0, seg, 1)
                else:
                    store_row(&y[n, co0 + k, r + 2 * i, 0], W_out, tmp + 2 * i * RW,
                              tmp + (2 * i + 1) * RW, tj0, seg, 2)
        t = t + seg
    for j in range(TILE):
        if probe[j] != probe[j]:
            return True
    return False


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, :, ::1] u,
                   const floating[::1] bias, floating[:, :, :, ::1] y, floating[:, ::1] work,
                   int[::1] nonfinite, Py_ssize_t T, Py_ssize_t pad_top, Py_ssize_t pad_left,
                   Py_ssize_t dilation, Py_ssize_t groups, int num_threads):
    """y = conv2d(x, w) + bias for a 3x3 weight w, stride 1, dilation 1 or 2 (on both
    axes), x padded with pad_top rows of zeros above and pad_left columns on the left (and
    as many as the tiles read below and on the right).

    x (N, C, H, W). u (groups, 16, Kp // 4, Cg, 4): the transformed weights G w G^T, each
    group's output channels padded with zero filters to Kp, a multiple of 4;
    u[g, e, kb, c, b] is position e of channel g*out_g + 4*kb + b's filter for input
    channel c. bias (C_out,) (zeros for none). T: tiles per task, a multiple of SPAN
    (SPAN_TILES). work (threads, workspace_size(...)) holds each thread's V, M, outputs of a
    row of tiles. nonfinite (threads,), zero on entry: thread t sets
    nonfinite[t] = 1 if it wrote an inf or a NaN (then y is not the direct sum's: see the
    module's text).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = y.shape[1], H_out = y.shape[2], W_out = y.shape[3]
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups
    cdef Py_ssize_t Kp = u.shape[2] * BLOCK
    cdef Py_ssize_t TH = tiles_along(H_out, dilation), TW = tiles_along(W_out, dilation)
    cdef Py_ssize_t S = T + TILE, RW = (TW + 7) // 8 * 8
    cdef Py_ssize_t tiles = N * TH * TW, chunks
    cdef Py_ssize_t task, t, g, first, count, e, span, kb, k
    cdef floating* v
    cdef floating* mbuf
    cdef floating* tmp
    # the one check made here (not in the loops): the products run on whole spans of tiles,
    # and with dilation 2 the input transform needs every task to start at an even tile
    if T <= 0 or T % SPAN:
        raise ValueError(f"T must be a positive multiple of {SPAN}, got {T}")
    chunks = (tiles + T - 1) // T

    cdef Team team = new_team()

    # chunk by chunk, every group's: the last chunk, often short, comes last
    with nogil, parallel(num_threads=num_threads):
        while True:
            task = take_task(&team)
            if task >= chunks * groups:
                break
            g = task % groups
            first = (task // groups) * T
            count = min(T, tiles - first)
            t = threadid()
            v = &work[t, 0]
            mbuf = v + 16 * plane_size(Cg, S)
            tmp = mbuf + 16 * plane_size(Kp, S)
            transform_input(x, g * Cg, Cg, first, count, TH, TW, pad_top, pad_left, dilation, v,
                            T, S)
            for e in range(16):                        # M[e] = U[e] @ V[e], 4 x SPAN at a time
                for span in range(T // SPAN):
                    for kb in range(Kp // BLOCK):
                        multiply_block(&u[g, e, kb, 0, 0], v + e * plane_size(Cg, S) + span * SPAN,
                                       Cg, S,
                                       mbuf + e * plane_size(Kp, S) + kb * BLOCK * S + span * SPAN)
                for k in range(Kp):                    # the 8 columns past T: read, not computed
                    memset(mbuf + e * plane_size(Kp, S) + k * S + T, 0, TILE * sizeof(floating))
            if transform_output(mbuf, Kp, S, first, count, TH, TW, dilation, &bias[g * out_g], y,
                                g * out_g, out_g, tmp, RW):
                nonfinite[t] = 1
        join_threads(&team)


#: Tiles of one register tile of the products: tasks take whole multiples of it.
SPAN_TILES = SPAN


def workspace_size(Py_ssize_t Cg, Py_ssize_t Kp, Py_ssize_t W_out, Py_ssize_t T,
                   Py_ssize_t dilation=1):
    """Values of one thread's row of conv2d_forward's work: V (16, Cg, T + 8) and
    M (16, Kp, T + 8), each position e of them plane_size apart, and the 4 outputs of a
    row of tiles (tiles_along(W_out, dilation), rounded up to whole vectors)."""
    return (16 * (plane_size(Cg, T + TILE) + plane_size(Kp, T + TILE))
            + 4 * ((tiles_along(W_out, dilation) + 7) // 8 * 8))
