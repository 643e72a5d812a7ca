# Vector helpers shared by the register-tiled kernels (_conv_blocked, _conv_winograd): each
# module that cimports them compiles its own inline copy.

from cython cimport floating


# The machine's vector width for the register tiles (_conv_blocked, and the products of
# _conv_winograd): 16 floats (one AVX-512 register) where the compiler targets AVX-512,
# otherwise 8 (one AVX register). The Winograd transforms keep vectors of 8 (the *8 helpers).
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #define CYCONV_VEC 16
    #define CYCONV_LANES 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    #else
    #define CYCONV_VEC 8
    #define CYCONV_LANES 0, 1, 2, 3, 4, 5, 6, 7
    #endif
    typedef float cyconv_floatv __attribute__((vector_size(CYCONV_VEC * 4), aligned(4), may_alias));
    typedef float cyconv_floath __attribute__((vector_size(CYCONV_VEC * 2), aligned(4), may_alias));
    #define CYCONV_AXPYV_FLOAT(acc, w, x) (*(cyconv_floatv*)(acc) += (w) * *(const cyconv_floatv*)(x))
    #define CYCONV_DOTV_FLOAT(acc, a, b) \
        (*(cyconv_floatv*)(acc) += *(const cyconv_floatv*)(a) * *(const cyconv_floatv*)(b))
    #define CYCONV_COPYV_FLOAT(dst, src) (*(cyconv_floatv*)(dst) = *(const cyconv_floatv*)(src))
    #define CYCONV_ZEROV_FLOAT(dst) (*(cyconv_floatv*)(dst) = (cyconv_floatv){0})
    #define CYCONV_PAIRV_FLOAT(dst, lo, hi) (*(cyconv_floatv*)(dst) = __builtin_shufflevector( \
        *(const cyconv_floath*)(lo), *(const cyconv_floath*)(hi), CYCONV_LANES))
    /* doubles: in vectors of 8 (64 bytes, one AVX-512 register), two of them for 16 lanes;
       one vector of 16 doubles (128 bytes) is wider than any register, and GCC then does
       every operation through memory (about 10x slower) */
    typedef double cyconv_double8v __attribute__((vector_size(64), aligned(8), may_alias));
    typedef double cyconv_double4v __attribute__((vector_size(32), aligned(8), may_alias));
    #if CYCONV_VEC == 16
    #define CYCONV_COPYV_DOUBLE(dst, src) do { \
        ((cyconv_double8v*)(dst))[0] = ((const cyconv_double8v*)(src))[0]; \
        ((cyconv_double8v*)(dst))[1] = ((const cyconv_double8v*)(src))[1]; } while (0)
    #define CYCONV_ZEROV_DOUBLE(dst) do { \
        ((cyconv_double8v*)(dst))[0] = (cyconv_double8v){0}; \
        ((cyconv_double8v*)(dst))[1] = (cyconv_double8v){0}; } while (0)
    #define CYCONV_AXPYV_DOUBLE(acc, w, x) do { \
        ((cyconv_double8v*)(acc))[0] += (w) * ((const cyconv_double8v*)(x))[0]; \
        ((cyconv_double8v*)(acc))[1] += (w) * ((const cyconv_double8v*)(x))[1]; } while (0)
    #define CYCONV_DOTV_DOUBLE(acc, a, b) do { \
        ((cyconv_double8v*)(acc))[0] += ((const cyconv_double8v*)(a))[0] * ((const cyconv_double8v*)(b))[0]; \
        ((cyconv_double8v*)(acc))[1] += ((const cyconv_double8v*)(a))[1] * ((const cyconv_double8v*)(b))[1]; \
    } while (0)
    #define CYCONV_PAIRV_DOUBLE(dst, lo, hi) do { \
        ((cyconv_double8v*)(dst))[0] = *(const cyconv_double8v*)(lo); \
        ((cyconv_double8v*)(dst))[1] = *(const cyconv_double8v*)(hi); } while (0)
    #else
    #define CYCONV_COPYV_DOUBLE(dst, src) (*(cyconv_double8v*)(dst) = *(const cyconv_double8v*)(src))
    #define CYCONV_ZEROV_DOUBLE(dst) (*(cyconv_double8v*)(dst) = (cyconv_double8v){0})
    #define CYCONV_AXPYV_DOUBLE(acc, w, x) \
        (*(cyconv_double8v*)(acc) += (w) * *(const cyconv_double8v*)(x))
    #define CYCONV_DOTV_DOUBLE(acc, a, b) \
        (*(cyconv_double8v*)(acc) += *(const cyconv_double8v*)(a) * *(const cyconv_double8v*)(b))
    #define CYCONV_PAIRV_DOUBLE(dst, lo, hi) (*(cyconv_double8v*)(dst) = __builtin_shufflevector( \
        *(const cyconv_double4v*)(lo), *(const cyconv_double4v*)(hi), 0, 1, 2, 3, 4, 5, 6, 7))
    #endif
    """
    enum: CYCONV_VEC
    void axpyv_float "CYCONV_AXPYV_FLOAT"(float* acc, float w, const float* x) noexcept nogil
    void axpyv_double "CYCONV_AXPYV_DOUBLE"(double* acc, double w, const double* x) noexcept nogil
    void dotv_float "CYCONV_DOTV_FLOAT"(float* acc, const float* a, const float* b) noexcept nogil
    void dotv_double "CYCONV_DOTV_DOUBLE"(double* acc, const double* a, const double* b) noexcept nogil
    void pairv_float "CYCONV_PAIRV_FLOAT"(float* dst, const float* lo, const float* hi) noexcept nogil
    void pairv_double "CYCONV_PAIRV_DOUBLE"(double* dst, const double* lo, const double* hi) noexcept nogil
    void copyv_float "CYCONV_COPYV_FLOAT"(float* dst, const float* src) noexcept nogil
    void copyv_double "CYCONV_COPYV_DOUBLE"(double* dst, const double* src) noexcept nogil
    void zerov_float "CYCONV_ZEROV_FLOAT"(float* dst) noexcept nogil
    void zerov_double "CYCONV_ZEROV_DOUBLE"(double* dst) noexcept nogil


cdef inline void axpyv(floating* acc, floating w, const floating* x) noexcept nogil:
    """acc[jj] += w * x[jj] for jj < CYCONV_VEC, as one vector operation."""
    if floating is float:
        axpyv_float(acc, w, x)
    else:
        axpyv_double(acc, w, x)


cdef inline void dotv(floating* acc, const floating* a, const floating* b) noexcept nogil:
    """acc[jj] += a[jj] * b[jj] for jj < CYCONV_VEC, as one vector operation."""
    if floating is float:
        dotv_float(acc, a, b)
    else:
        dotv_double(acc, a, b)


cdef inline void copyv(floating* dst, const floating* src) noexcept nogil:
    """dst[jj] = src[jj] for jj < CYCONV_VEC, as one vector load and store."""
    if floating is float:
        copyv_float(dst, src)
    else:
        copyv_double(dst, src)


cdef inline void zerov(floating* dst) noexcept nogil:
    """dst[jj] = 0 for jj < CYCONV_VEC, as one vector store."""
    if floating is float:
        zerov_float(dst)
    else:
        zerov_double(dst)


cdef inline void pairv(floating* dst, const floating* lo, const floating* hi) noexcept nogil:
    """dst[:V/2] = lo[:V/2] and dst[V/2:V] = hi[:V/2] (V = CYCONV_VEC): two half vectors
    side by side in one."""
    if floating is float:
        pairv_float(dst, lo, hi)
    else:
        pairv_double(dst, lo, hi)


# Eight-wide vector arithmetic on the accumulators, with GCC/Clang vector types: written as
# plain loops, GCC unrolls the 8 columns into scalars and loses the vector registers.
cdef extern from *:
    """
    typedef float cyconv_float8 __attribute__((vector_size(32), aligned(4), may_alias));
    typedef double cyconv_double8 __attribute__((vector_size(64), aligned(8), may_alias));
    typedef float cyconv_float4 __attribute__((vector_size(16), aligned(4), may_alias));
    typedef double cyconv_double4 __attribute__((vector_size(32), aligned(8), may_alias));
    #define CYCONV_PAIR8_FLOAT(dst, lo, hi) (*(cyconv_float8*)(dst) = __builtin_shufflevector( \
        *(const cyconv_float4*)(lo), *(const cyconv_float4*)(hi), 0, 1, 2, 3, 4, 5, 6, 7))
    #define CYCONV_PAIR8_DOUBLE(dst, lo, hi) (*(cyconv_double8*)(dst) = __builtin_shufflevector( \
        *(const cyconv_double4*)(lo), *(const cyconv_double4*)(hi), 0, 1, 2, 3, 4, 5, 6, 7))
    #define CYCONV_AXPY8_FLOAT(acc, w, x) (*(cyconv_float8*)(acc) += (w) * *(const cyconv_float8*)(x))
    #define CYCONV_AXPY8_DOUBLE(acc, w, x) (*(cyconv_double8*)(acc) += (w) * *(const cyconv_double8*)(x))
    #define CYCONV_DOT8_FLOAT(acc, a, b) \
        (*(cyconv_float8*)(acc) += *(const cyconv_float8*)(a) * *(const cyconv_float8*)(b))
    #define CYCONV_DOT8_DOUBLE(acc, a, b) \
        (*(cyconv_double8*)(acc) += *(const cyconv_double8*)(a) * *(const cyconv_double8*)(b))
    #define CYCONV_ADD8_FLOAT(dst, a, b) \
        (*(cyconv_float8*)(dst) = *(const cyconv_float8*)(a) + *(const cyconv_float8*)(b))
    #define CYCONV_ADD8_DOUBLE(dst, a, b) \
        (*(cyconv_double8*)(dst) = *(const cyconv_double8*)(a) + *(const cyconv_double8*)(b))
    #define CYCONV_SUB8_FLOAT(dst, a, b) \
        (*(cyconv_float8*)(dst) = *(const cyconv_float8*)(a) - *(const cyconv_float8*)(b))
    #define CYCONV_SUB8_DOUBLE(dst, a, b) \
        (*(cyconv_double8*)(dst) = *(const cyconv_double8*)(a) - *(const cyconv_double8*)(b))
    #define CYCONV_ZIP8_FLOAT(dst, a, b) do { \
        cyconv_float8 a_ = *(const cyconv_float8*)(a), b_ = *(const cyconv_float8*)(b); \
        ((cyconv_float8*)(dst))[0] = __builtin_shufflevector(a_, b_, 0, 8, 1, 9, 2, 10, 3, 11); \
        ((cyconv_float8*)(dst))[1] = __builtin_shufflevector(a_, b_, 4, 12, 5, 13, 6, 14, 7, 15); \
    } while (0)
    #define CYCONV_ZIP8_DOUBLE(dst, a, b) do { \
        cyconv_double8 a_ = *(const cyconv_double8*)(a), b_ = *(const cyconv_double8*)(b); \
        ((cyconv_double8*)(dst))[0] = __builtin_shufflevector(a_, b_, 0, 8, 1, 9, 2, 10, 3, 11); \
        ((cyconv_double8*)(dst))[1] = __builtin_shufflevector(a_, b_, 4, 12, 5, 13, 6, 14, 7, 15); \
    } while (0)
    #define CYCONV_COPY8_FLOAT(dst, a) (*(cyconv_float8*)(dst) = *(const cyconv_float8*)(a))
    #define CYCONV_COPY8_DOUBLE(dst, a) (*(cyconv_double8*)(dst) = *(const cyconv_double8*)(a))
    #define CYCONV_UNZIP8_FLOAT(even, odd, src) do { \
        cyconv_float8 a_ = ((const cyconv_float8*)(src))[0], b_ = ((const cyconv_float8*)(src))[1]; \
        *(cyconv_float8*)(even) = __builtin_shufflevector(a_, b_, 0, 2, 4, 6, 8, 10, 12, 14); \
        *(cyconv_float8*)(odd) = __builtin_shufflevector(a_, b_, 1, 3, 5, 7, 9, 11, 13, 15); \
    } while (0)
    #define CYCONV_UNZIP8_DOUBLE(even, odd, src) do { \
        cyconv_double8 a_ = ((const cyconv_double8*)(src))[0], b_ = ((const cyconv_double8*)(src))[1]; \
        *(cyconv_double8*)(even) = __builtin_shufflevector(a_, b_, 0, 2, 4, 6, 8, 10, 12, 14); \
        *(cyconv_double8*)(odd) = __builtin_shufflevector(a_, b_, 1, 3, 5, 7, 9, 11, 13, 15); \
    } while (0)
    #define CYCONV_PREFETCH_FOR_WRITE(address) __builtin_prefetch((address), 1, 3)
    #define CYCONV_PREFETCH_FOR_READ(address) __builtin_prefetch((address), 0, 3)
    """
    void axpy8_float "CYCONV_AXPY8_FLOAT"(float* acc, float w, const float* x) noexcept nogil
    void axpy8_double "CYCONV_AXPY8_DOUBLE"(double* acc, double w, const double* x) noexcept nogil
    void pair8_float "CYCONV_PAIR8_FLOAT"(float* dst, const float* lo, const float* hi) noexcept nogil
    void pair8_double "CYCONV_PAIR8_DOUBLE"(double* dst, const double* lo, const double* hi) noexcept nogil
    void dot8_float "CYCONV_DOT8_FLOAT"(float* acc, const float* a, const float* b) noexcept nogil
    void dot8_double "CYCONV_DOT8_DOUBLE"(double* acc, const double* a, const double* b) noexcept nogil
    void add8_float "CYCONV_ADD8_FLOAT"(float* dst, const float* a, const float* b) noexcept nogil
    void add8_double "CYCONV_ADD8_DOUBLE"(double* dst, const double* a, const double* b) noexcept nogil
    void sub8_float "CYCONV_SUB8_FLOAT"(float* dst, const float* a, const float* b) noexcept nogil
    void sub8_double "CYCONV_SUB8_DOUBLE"(double* dst, const double* a, const double* b) noexcept nogil
    void zip8_float "CYCONV_ZIP8_FLOAT"(float* dst, const float* a, const float* b) noexcept nogil
    void zip8_double "CYCONV_ZIP8_DOUBLE"(double* dst, const double* a, const double* b) noexcept nogil
    void copy8_float "CYCONV_COPY8_FLOAT"(float* dst, const float* a) noexcept nogil
    void copy8_double "CYCONV_COPY8_DOUBLE"(double* dst, const double* a) noexcept nogil
    void unzip8_float "CYCONV_UNZIP8_FLOAT"(float* even, float* odd, const float* src) noexcept nogil
    void unzip8_double "CYCONV_UNZIP8_DOUBLE"(double* even, double* odd, const double* src) noexcept nogil
    void prefetch_for_write "CYCONV_PREFETCH_FOR_WRITE"(const void* address) noexcept nogil
    void prefetch_for_read "CYCONV_PREFETCH_FOR_READ"(const void* address) noexcept nogil


cdef inline void axpy8(floating* acc, floating w, const floating* x) noexcept nogil:
    """acc[jj] += w * x[jj] for jj < 8, as one vector operation."""
    if floating is float:
        axpy8_float(acc, w, x)
    else:
        axpy8_double(acc, w, x)


cdef inline void pair8(floating* dst, const floating* lo, const floating* hi) noexcept nogil:
    """dst[0:4] = lo[0:4] and dst[4:8] = hi[0:4]: two half vectors side by side in one."""
    if floating is float:
        pair8_float(dst, lo, hi)
    else:
        pair8_double(dst, lo, hi)


cdef inline void dot8(floating* acc, const floating* a, const floating* b) noexcept nogil:
    """acc[jj] += a[jj] * b[jj] for jj < 8, as one vector operation."""
    if floating is float:
        dot8_float(acc, a, b)
    else:
        dot8_double(acc, a, b)


cdef inline void add8(floating* dst, const floating* a, const floating* b) noexcept nogil:
    """dst[jj] = a[jj] + b[jj] for jj < 8, as one vector operation."""
    if floating is float:
        add8_float(dst, a, b)
    else:
        add8_double(dst, a, b)


cdef inline void sub8(floating* dst, const floating* a, const floating* b) noexcept nogil:
    """dst[jj] = a[jj] - b[jj] for jj < 8, as one vector operation."""
    if floating is float:
        sub8_float(dst, a, b)
    else:
        sub8_double(dst, a, b)


cdef inline void zip8(floating* dst, const floating* a, const floating* b) noexcept nogil:
    """dst[2*jj] = a[jj] and dst[2*jj + 1] = b[jj] for jj < 8: two vectors interleaved."""
    if floating is float:
        zip8_float(dst, a, b)
    else:
        zip8_double(dst, a, b)


cdef inline void copy8(floating* dst, const floating* a) noexcept nogil:
    """dst[jj] = a[jj] for jj < 8, as one vector load and store."""
    if floating is float:
        copy8_float(dst, a)
    else:
        copy8_double(dst, a)


cdef inline void unzip8(floating* even, floating* odd, const floating* src) noexcept nogil:
    """even[jj] = src[2*jj] and odd[jj] = src[2*jj + 1] for jj < 8: 16 values split in two."""
    if floating is float:
        unzip8_float(even, odd, src)
    else:
        unzip8_double(even, odd, src)


# A 16 x 16 transpose of floats, for tiles whose accumulators hold output channels of one
# position each (vectorised over channels) and whose output planes want positions side by
# side. With AVX-512 it is done in registers: 64 shuffles for 256 values, in four steps
# (pairs of rows interleaved, then pairs of pairs, then 128-bit quarters twice); otherwise
# one value at a time.
cdef extern from *:
    """
    #include <stddef.h>
    #if defined(__AVX512F__)
    #include <immintrin.h>
    static inline void cyconv_store_transposed16(const float* s, ptrdiff_t s_stride,
                                                 ptrdiff_t rows, float* y, ptrdiff_t y_stride,
                                                 ptrdiff_t columns) {
        __m512 r[16], t[16], u[16];
        __mmask16 keep = (__mmask16)((1u << rows) - 1u);
        int i, j;
        for (i = 0; i < 16; i++)      /* row i = s[i, 0:16]; zeros past the rows given */
            r[i] = i < rows ? _mm512_loadu_ps(s + i * s_stride) : _mm512_setzero_ps();
        for (i = 0; i < 16; i += 2) { /* per 128-bit quarter q: rows i, i+1 at columns 4q..4q+3 */
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (i = 0; i < 16; i += 4) { /* u[i+j], quarter q: column 4q+j of rows i..i+3 */
            u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
            u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
            u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (j = 0; j < 4; j++) {     /* column 4q+j = quarter q of u[j], u[4+j], u[8+j], u[12+j] */
            __m512 even = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);      /* quarters 0, 2 */
            __m512 odd = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);       /* quarters 1, 3 */
            __m512 even2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
            __m512 odd2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
            if (j < columns)
                _mm512_mask_storeu_ps(y + j * y_stride, keep, _mm512_shuffle_f32x4(even, even2, 0x88));
            if (4 + j < columns)
                _mm512_mask_storeu_ps(y + (4 + j) * y_stride, keep, _mm512_shuffle_f32x4(odd, odd2, 0x88));
            if (8 + j < columns)
                _mm512_mask_storeu_ps(y + (8 + j) * y_stride, keep, _mm512_shuffle_f32x4(even, even2, 0xDD));
            if (12 + j < columns)
                _mm512_mask_storeu_ps(y + (12 + j) * y_stride, keep, _mm512_shuffle_f32x4(odd, odd2, 0xDD));
        }
    }
    #else
    static inline void cyconv_store_transposed16(const float* s, ptrdiff_t s_stride,
                                                 ptrdiff_t rows, float* y, ptrdiff_t y_stride,
                                                 ptrdiff_t columns) {
        ptrdiff_t i, j;
        for (j = 0; j < columns; j++)
            for (i = 0; i < rows; i++)
                y[j * y_stride + i] = s[i * s_stride + j];
    }
    #endif
    """
    void store_transposed16_float "cyconv_store_transposed16"(
        const float* s, Py_ssize_t s_stride, Py_ssize_t rows, float* y, Py_ssize_t y_stride,
        Py_ssize_t columns) noexcept nogil


cdef inline void store_transposed16(const floating* s, Py_ssize_t s_stride, Py_ssize_t rows,
                                    floating* y, Py_ssize_t y_stride,
                                    Py_ssize_t columns) noexcept nogil:
    """y[j * y_stride + i] = s[i * s_stride + j] for i < rows and j < columns (both <= 16).

    In float32 with AVX-512 it reads s[i * s_stride : i * s_stride + 16] whole for every
    i < rows, even past the columns asked for: they must be there. (Masked loads, which
    would not read them, made the tiles that call this twice as slow: a tile stores its
    accumulators just before, and the CPU cannot hand stored values on to a masked load
    ("store-to-load forwarding"), which then waits until they reach the cache.) In float64,
    or without AVX-512, it is a plain loop over the values."""
    cdef Py_ssize_t i, j
    if floating is float:
        store_transposed16_float(s, s_stride, rows, y, y_stride, columns)
    else:
        for j in range(columns):
            for i in range(rows):
                y[j * y_stride + i] = s[i * s_stride + j]
