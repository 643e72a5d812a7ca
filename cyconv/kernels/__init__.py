"""The compiled kernels: Cython loops over typed memoryviews, parallel with OpenMP.

Layer 2 of cyconv: functions on NumPy arrays, no autograd. Every function has the same
signature as its counterpart in ``cyconv.reference`` (the NumPy truth it is tested
against), so the two can be swapped in a test or a benchmark.

- convolution: ``conv2d``, ``conv2d_grad_input``, ``conv2d_grad_weight``, ``conv2d_grad_bias``
- pooling: ``max_pool2d`` (+ ``_grad_input``), ``avg_pool2d`` (+ ``_grad_input``),
  ``adaptive_avg_pool2d`` (+ ``_grad_input``)
- elementwise: ``relu`` (+ ``_grad_input``), ``batch_norm_forward`` / ``_backward``
  (training mode, batch statistics)
- threads: ``set_num_threads``, ``get_num_threads``, ``openmp_enabled``

The loops themselves are in the ``_*.pyx`` files beside this one; the Python files check
the arguments and prepare the output arrays.
"""

from .conv import (ALGORITHMS, choose_algorithm, conv2d, conv2d_grad_bias, conv2d_grad_input,
                   conv2d_grad_weight)
from .elementwise import batch_norm_backward, batch_norm_forward, relu, relu_grad_input
from .pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_grad_input, avg_pool2d,
                   avg_pool2d_grad_input, max_pool2d, max_pool2d_grad_input)
from .threads import get_num_threads, openmp_enabled, set_num_threads

__all__ = [
    "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
    "choose_algorithm", "ALGORITHMS",
    "max_pool2d", "max_pool2d_grad_input", "avg_pool2d", "avg_pool2d_grad_input",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_grad_input",
    "relu", "relu_grad_input", "batch_norm_forward", "batch_norm_backward",
    "set_num_threads", "get_num_threads", "openmp_enabled",
]
