"""cyconv: an educational deep-learning engine for convolutional networks.

The package is built in layers, each using only the ones below it:

- ``cyconv.geometry``: argument checks and the output-size formula, shared by all.
- ``cyconv.reference``: plain NumPy, the truth every kernel is tested against.
- ``cyconv.kernels``: the compiled Cython/OpenMP kernels on NumPy arrays.
"""

from . import geometry, kernels, reference
from .kernels import get_num_threads, openmp_enabled, set_num_threads

__version__ = "0.1.0"

__all__ = ["geometry", "kernels", "reference", "get_num_threads", "set_num_threads",
           "openmp_enabled", "__version__"]
