# Small inline helpers shared by the kernels (compiled into each module that cimports them).


cdef inline Py_ssize_t first_inside(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """Smallest output index o >= 0 with o * stride + offset >= 0."""
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t stop_inside(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                                   Py_ssize_t out_size) noexcept nogil:
    """One past the largest output index o < out_size with o * stride + offset < size."""
    cdef Py_ssize_t last = size - 1 - offset
    if last < 0:
        return 0
    last = last // stride + 1
    return last if last < out_size else out_size


cdef inline void inside_ranges(Py_ssize_t[::1] lo, Py_ssize_t[::1] hi, Py_ssize_t dilation,
                               Py_ssize_t pad, Py_ssize_t stride, Py_ssize_t size,
                               Py_ssize_t out_size) noexcept nogil:
    """For every kernel tap t: output indices o in [lo[t], hi[t]) read inside the input.

    Output o, tap t reads input index o * stride - pad + t * dilation; it is inside when
    that lies in [0, size). Computed once per call, so the hot loops divide nothing.
    """
    cdef Py_ssize_t t
    for t in range(lo.shape[0]):
        lo[t] = first_inside(t * dilation - pad, stride)
        hi[t] = stop_inside(t * dilation - pad, stride, size, out_size)
        if hi[t] < lo[t]:
            hi[t] = lo[t]
