"""cyconv: an educational deep-learning engine for convolutional networks.

The package is built in layers, each using only the ones below it:

- ``cyconv.geometry``: argument checks and the output-size formula, shared by all.
- ``cyconv.reference``: plain NumPy, the truth every kernel is tested against.
- ``cyconv.kernels``: the compiled Cython/OpenMP kernels on NumPy arrays.
- ``cyconv.Tensor`` (``cyconv.autograd``): arrays that record how they were made; backward().
- ``cyconv.functional``: convolution, pooling, activations, losses... on Tensors.
- ``cyconv.nn``: Module and the layers; ``cyconv.optim``: SGD, Adam, AdamW;
  ``cyconv.save`` / ``cyconv.load``: state dicts and checkpoints as .npz.
- ``cyconv.models``: LeNet-5 and other small classic CNNs; ``cyconv.data``: datasets, the
  DataLoader, transforms and the built-in 8x8 digits.
- ``cyconv.summary`` and ``cyconv.teach``: a model's table of shapes, parameters, receptive
  fields and FLOPs; convolution as a matrix, classic image kernels, size calculators.
"""

import os

# Thread pools that wait for work by spinning take the cores from each other on a small
# machine. Measured on 2 cores: after a NumPy matrix product, OpenBLAS's idle threads spin
# for about a tenth of a second and the next compiled convolution ran 2x slower; OpenMP
# threads left spinning between loops slowed the BLAS calls in between 2-5x. So, unless the
# user set them, idle threads go to sleep at once. Both settings are read when the library
# starts, so they only take effect if cyconv is imported before NumPy (and PyTorch), or if
# they are set in the environment.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import functional, geometry, kernels, reference  # noqa: E402
from .autograd import Tensor, cat, enable_grad, no_grad, stack, tensor  # noqa: E402
from .kernels import get_num_threads, openmp_enabled, set_num_threads  # noqa: E402
from .gradient_check import GradcheckError, gradcheck  # noqa: E402
from .random import manual_seed  # noqa: E402
from . import data, models, nn, optim  # noqa: E402  (after functional, which nn re-exports)
from .serialization import load, save  # noqa: E402
from .summary import summary  # noqa: E402
from . import teach  # noqa: E402

__version__ = "0.1.0"

__all__ = ["geometry", "kernels", "reference", "get_num_threads", "set_num_threads",
           "openmp_enabled", "Tensor", "tensor", "no_grad", "enable_grad", "cat", "stack",
           "manual_seed", "functional", "gradcheck", "GradcheckError", "nn", "models", "optim", "save", "load", "data", "summary", "teach",
           "__version__"]
