"""cyconv.data: datasets, the DataLoader, transforms, and the image datasets.

- :class:`Dataset`, :class:`TensorDataset`, :class:`Subset`, :func:`random_split`
  (``cyconv/data/dataset.py``).
- :class:`DataLoader`: shuffled mini-batches, a new order each epoch, batches of an
  in-memory dataset cut by fancy indexing (``cyconv/data/loader.py``).
- :mod:`cyconv.data.transforms`: ``Normalize``, ``RandomCrop``, ``RandomShift``,
  ``RandomHorizontalFlip``, ``Compose``, applied to whole batches.
- :func:`load_digits` / :class:`DigitsDataset`: the UCI handwritten digits, 1,797 8x8
  images shipped with the package (E. Alpaydin and C. Kaynak, 1998, UCI Machine Learning
  Repository, https://doi.org/10.24432/C50P49, CC BY 4.0), with a fixed 60/20/20 split.
- :func:`load_mnist` (MNIST, Fashion-MNIST IDX files) and :func:`load_cifar10` (CIFAR-10
  python batches) read files from a directory you give; nothing is downloaded.
- :func:`get_dataset`: any of them by the command line's name (``'digits'``,
  ``'mnist:DIR'``, ``'fashion-mnist:DIR'``, ``'cifar10:DIR'``).

All randomness (shuffling, random_split, augmentation) comes from
``cyconv.random.generator()``, so ``cyconv.manual_seed(n)`` makes it reproducible.

The idiom, with augmentation for training only::

    from cyconv.data import DataLoader, TensorDataset, get_dataset, transforms

    train = get_dataset("digits", "train")
    val = get_dataset("digits", "val")
    augment = transforms.RandomShift(1)
    train_loader = DataLoader(TensorDataset(train.images, train.labels), batch_size=64,
                              shuffle=True, transform=augment)
    val_loader = DataLoader(TensorDataset(val.images, val.labels), batch_size=256)
"""

from . import transforms
from .cifar import CIFAR10_CLASSES, load_cifar10
from .dataset import Dataset, Subset, TensorDataset, random_split
from .digits import DIGITS_CLASSES, DigitsDataset, load_digits
from .loader import DataLoader, default_collate
from .mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_mnist, read_idx
from .registry import DATASET_SPECS, DatasetSplit, get_dataset
from .splits import stratified_split

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader",
           "default_collate", "transforms", "load_digits", "DigitsDataset", "load_mnist",
           "read_idx", "load_cifar10", "get_dataset", "DatasetSplit", "DATASET_SPECS",
           "stratified_split", "DIGITS_CLASSES", "MNIST_CLASSES", "FASHION_MNIST_CLASSES",
           "CIFAR10_CLASSES"]
