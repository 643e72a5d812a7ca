"""``cyconv.teach``: small tools for learning how convolutional networks work.

- :mod:`~cyconv.teach.calculators`: output sizes, parameter counts, FLOPs and receptive
  fields, one formula each (``conv_output_size``, ``conv_params``, ``linear_params``,
  ``conv_flops``, ``receptive_field``...). :func:`cyconv.summary` uses them.
- :mod:`~cyconv.teach.conv_matrix`: a convolution written as one big matrix
  (``conv_as_matrix``), printed with its shared weights as letters (``show_conv_matrix``),
  and compared with a fully connected layer (``compare_with_dense``).
- :mod:`~cyconv.teach.image_kernels`: the classic hand-made filters (blur, sharpen, Sobel,
  Prewitt, outline...) in ``KERNELS``, and ``apply_kernel`` to try them on an image.

A tour::

    from cyconv import teach
    print(teach.show_conv_matrix((4, 4), (3, 3)))      # the Toeplitz pattern
    print(teach.compare_with_dense((1, 28, 28), (6, 1, 5, 5)))
    edges = teach.apply_kernel(image, "sobel_x")       # vertical edges of an (H, W) image
    teach.conv_output_size(32, 5)                      # 28
"""

from .calculators import (ReceptiveField, adaptive_window, batchnorm_params, conv_flops,
                          conv_output_shape, conv_output_size, conv_params, linear_flops,
                          linear_params, pool_output_size, receptive_field, receptive_field_step)
from .conv_matrix import (ConvMatrixInfo, compare_with_dense, conv_as_matrix, conv_matrix_pattern,
                          show_conv_matrix)
from .image_kernels import DESCRIPTIONS, KERNELS, apply_kernel, get_kernel, kernel_names

__all__ = [
    "conv_output_size", "conv_output_shape", "pool_output_size", "conv_params", "linear_params",
    "batchnorm_params", "conv_flops", "linear_flops", "ReceptiveField", "receptive_field_step",
    "receptive_field", "adaptive_window",
    "conv_as_matrix", "conv_matrix_pattern", "compare_with_dense", "ConvMatrixInfo",
    "show_conv_matrix",
    "KERNELS", "DESCRIPTIONS", "get_kernel", "apply_kernel", "kernel_names",
]
