"""Tests of cyconv.data.

1. datasets: TensorDataset (arrays and Tensors, mismatched lengths), Subset, random_split;
2. DataLoader: batch sizes, drop_last, len, every index exactly once per epoch, shuffling
   reproducible (manual_seed, seed=) and new each epoch, the fast path against the generic
   one, dtypes, argument errors;
3. transforms: Normalize per channel, RandomCrop/RandomShift (each output is a window of
   the padded original), flips, Compose, single images, reproducibility;
4. the embedded digits: sizes, split disjoint and stratified and fixed, values;
5. MNIST IDX files and CIFAR-10 pickles built here in tmp_path: round trips, gzipped or
   not, every malformed case with its message;
6. get_dataset: specs, splits and their errors.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings

import numpy as np
import pytest

import cyconv
from cyconv.data import (CIFAR10_CLASSES, DIGITS_CLASSES, FASHION_MNIST_CLASSES,
                         DataLoader, Dataset, DigitsDataset, Subset, TensorDataset,
                         get_dataset, load_cifar10, load_digits, load_mnist, random_split,
                         read_idx, stratified_split, transforms)
from cyconv.data.digits import split_indices


# --- 1. datasets -------------------------------------------------------------------------

def test_tensor_dataset_items_and_len():
    x = np.arange(24, dtype=np.float32).reshape(6, 1, 2, 2)
    y = np.arange(6)
    ds = TensorDataset(x, cyconv.Tensor(y))
    assert len(ds) == 6
    image, label = ds[4]
    np.testing.assert_array_equal(image, x[4])
    assert label == 4
    assert ds.arrays[0] is x


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match="same first dimension.*\\[3, 4\\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(TypeError, match="argument 1"):
        TensorDataset(np.zeros(3), [1, 2, 3])


def test_subset_and_random_split():
    ds = TensorDataset(np.arange(10) * 10, np.arange(10))
    sub = Subset(ds, [7, 2])
    assert len(sub) == 2 and sub[0][0] == 70 and sub[1][1] == 2
    with pytest.raises(IndexError, match="index 10"):
        Subset(ds, [10])
    cyconv.manual_seed(3)
    a, b = random_split(ds, [7, 3])
    cyconv.manual_seed(3)
    a2, _ = random_split(ds, [7, 3])
    np.testing.assert_array_equal(a.indices, a2.indices)
    assert sorted(np.concatenate([a.indices, b.indices]).tolist()) == list(range(10))
    assert [len(s) for s in random_split(ds, [0.5, 0.25, 0.25], seed=1)] == [6, 2, 2]
    with pytest.raises(ValueError, match="add up to 9"):
        random_split(ds, [5, 4])


# --- 2. DataLoader -----------------------------------------------------------------------

def _dataset(n=10):
    images = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return TensorDataset(images, np.arange(n))


@pytest.mark.parametrize("n, batch, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]), (10, 3, True, [3, 3, 3]), (10, 5, True, [5, 5]),
    (10, 20, False, [10]), (10, 20, True, []), (0, 4, False, [])])
def test_loader_batch_sizes(n, batch, drop_last, sizes):
    loader = DataLoader(_dataset(n), batch_size=batch, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(y) for _, y in loader] == sizes


def test_loader_batch_types_and_order():
    loader = DataLoader(_dataset(), batch_size=4)
    images, labels = next(iter(loader))
    assert isinstance(images, cyconv.Tensor) and images.dtype == np.float32
    assert images.shape == (4, 1, 2, 2)
    assert isinstance(labels, np.ndarray) and labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 3]
    # uint8 images become float32 (values unchanged)
    raw = TensorDataset(np.full((3, 1, 2, 2), 7, np.uint8), np.zeros(3, np.uint8))
    images, labels = next(iter(DataLoader(raw, batch_size=3)))
    assert images.dtype == np.float32 and float(images.data.max()) == 7.0
    assert labels.dtype == np.int64


def _epoch(loader):
    return np.concatenate([labels for _, labels in loader])


def test_loader_shuffle_every_index_once_and_new_each_epoch():
    loader = DataLoader(_dataset(50), batch_size=8, shuffle=True, seed=0)
    first, second = _epoch(loader), _epoch(loader)
    assert sorted(first.tolist()) == list(range(50)) == sorted(second.tolist())
    assert first.tolist() != second.tolist()
    assert first.tolist() != list(range(50))


def test_loader_shuffle_reproducible():
    a = DataLoader(_dataset(30), batch_size=4, shuffle=True, seed=7)
    b = DataLoader(_dataset(30), batch_size=4, shuffle=True, seed=7)
    np.random.default_rng().random(5)      # other draws do not disturb a seeded loader
    assert [_epoch(a).tolist() for _ in range(3)] == [_epoch(b).tolist() for _ in range(3)]
    loader = DataLoader(_dataset(30), batch_size=4, shuffle=True)   # global generator
    cyconv.manual_seed(11)
    runs1 = [_epoch(loader).tolist() for _ in range(2)]
    cyconv.manual_seed(11)
    runs2 = [_epoch(loader).tolist() for _ in range(2)]
    assert runs1 == runs2 and runs1[0] != runs1[1]


def test_loader_images_match_labels_after_shuffle():
    loader = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=1, drop_last=True)
    for images, labels in loader:
        np.testing.assert_array_equal(images.data[:, 0, 0, 0], labels * 4)


class _ListDataset(Dataset):
    """A plain Dataset, fetched example by example."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_generic_path_matches_fast_path():
    ds = _dataset(13)
    generic = _ListDataset(*ds.arrays)
    sub_fast = Subset(ds, [12, 0, 5, 7, 3])
    sub_generic = Subset(generic, [12, 0, 5, 7, 3])
    for a, b in [(ds, generic), (sub_fast, sub_generic)]:
        la = DataLoader(a, batch_size=4, shuffle=True, seed=5)
        lb = DataLoader(b, batch_size=4, shuffle=True, seed=5)
        for (xa, ya), (xb, yb) in zip(la, lb):
            np.testing.assert_array_equal(xa.data, xb.data)
            np.testing.assert_array_equal(ya, yb)
            assert xb.dtype == np.float32 and yb.dtype == np.int64


def test_loader_applies_transform_to_batches():
    calls = []

    def double(batch):
        calls.append(batch.shape)
        return batch * 2

    loader = DataLoader(_dataset(10), batch_size=4, transform=double)
    images, _ = next(iter(loader))
    np.testing.assert_array_equal(images.data, _dataset(10).arrays[0][:4] * 2)
    assert calls == [(4, 1, 2, 2)]


def test_loader_errors():
    ds = _dataset()
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(ds, batch_size=2.5)
    with pytest.raises(TypeError, match="__len__ and __getitem__"):
        DataLoader(42)
    with pytest.raises(TypeError, match="transform must be callable"):
        DataLoader(ds, transform="flip")
    with pytest.raises(ValueError, match="seed"):
        DataLoader(ds, seed=-1)


# --- 3. transforms -----------------------------------------------------------------------

def test_normalize_per_channel():
    x = np.random.default_rng(0).random((5, 3, 4, 4)).astype(np.float32)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.5, 2.0]
    out = transforms.Normalize(mean, std)(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (x[:, c] - mean[c]) / std[c], rtol=1e-6)
    single = transforms.Normalize(mean, std)(x[2])
    np.testing.assert_allclose(single, out[2], rtol=1e-6)
    mu, sigma = transforms.channel_mean_std(x)
    z = transforms.Normalize(mu, sigma)(x)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)


def test_normalize_errors():
    with pytest.raises(ValueError, match="std must be positive"):
        transforms.Normalize(0.5, 0)
    with pytest.raises(ValueError, match="2 values, but the images have 3 channels"):
        transforms.Normalize([0, 0], [1, 1])(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="shape \\(2, 2\\)"):
        transforms.Normalize(0, 1)(np.zeros((2, 2)))


def _offsets_in(padded, window):
    """Every (y, x) at which ``window`` equals a window of ``padded``."""
    c, h, w = window.shape
    return [(y, x) for y in range(padded.shape[1] - h + 1) for x in range(padded.shape[2] - w + 1)
            if np.array_equal(padded[:, y:y + h, x:x + w], window)]


def test_random_crop_is_a_window_of_the_padded_image():
    x = np.random.default_rng(1).random((40, 2, 6, 5)).astype(np.float32) + 1.0
    cyconv.manual_seed(0)
    out = transforms.RandomCrop((4, 5), padding=2)(x)
    assert out.shape == (40, 2, 4, 5) and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for n in range(len(x)):
        found = _offsets_in(padded[n], out[n])
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 10                 # each image gets its own offset
    assert all(0 <= y <= 6 and 0 <= x_ <= 4 for y, x_ in offsets)


def test_random_shift_keeps_size_and_moves_at_most_max_shift():
    x = np.random.default_rng(2).random((30, 1, 8, 8)).astype(np.float32) + 1.0
    cyconv.manual_seed(1)
    out = transforms.RandomShift(2)(x)
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    shifts = {_offsets_in(padded[n], out[n])[0] for n in range(30)}
    assert shifts <= {(y, x_) for y in range(5) for x_ in range(5)} and len(shifts) > 5
    # edge padding repeats the border pixels
    out = transforms.RandomShift(1, padding_mode="edge")(x)
    edge = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    assert all(_offsets_in(edge[n], out[n]) for n in range(30))


def test_random_crop_single_image_tensor_and_errors():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    out = transforms.RandomCrop(2)(image)
    assert out.shape == (1, 2, 2) and _offsets_in(image, out)
    as_tensor = transforms.RandomCrop(2)(cyconv.Tensor(image[None]))
    assert isinstance(as_tensor, cyconv.Tensor) and as_tensor.shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="larger than the padded image 4x4"):
        transforms.RandomCrop(5)(image)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        transforms.RandomCrop(2, padding=-1)
    with pytest.raises(ValueError, match="padding_mode"):
        transforms.RandomCrop(2, padding_mode="wrap")


def test_horizontal_flip():
    x = np.random.default_rng(3).random((50, 3, 4, 5)).astype(np.float32)
    out = transforms.RandomHorizontalFlip(0.5)(x)
    flipped = [np.array_equal(out[n], x[n, :, :, ::-1]) for n in range(50)]
    kept = [np.array_equal(out[n], x[n]) for n in range(50)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 5 < sum(flipped) < 45
    np.testing.assert_array_equal(transforms.RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(transforms.RandomHorizontalFlip(0.0)(x), x)
    before = x.copy()
    transforms.RandomHorizontalFlip(1.0)(x)
    np.testing.assert_array_equal(x, before)         # the input is not modified
    with pytest.raises(ValueError, match="p must be in"):
        transforms.RandomHorizontalFlip(1.5)


def test_compose_and_reproducibility():
    x = np.random.default_rng(4).random((16, 3, 8, 8)).astype(np.float32)
    pipeline = transforms.Compose([transforms.RandomCrop(8, padding=1),
                                   transforms.RandomHorizontalFlip(),
                                   transforms.Normalize([0.5] * 3, [0.25] * 3)])
    cyconv.manual_seed(42)
    a = pipeline(x)
    cyconv.manual_seed(42)
    b = pipeline(x)
    np.testing.assert_array_equal(a, b)
    cyconv.manual_seed(42)
    step = transforms.RandomCrop(8, padding=1)(x)
    step = transforms.RandomHorizontalFlip()(step)
    np.testing.assert_allclose(a, (step - 0.5) / 0.25, rtol=1e-6)
    assert pipeline(x[0]).shape == (3, 8, 8)
    assert "RandomCrop" in repr(pipeline)


# --- 4. the embedded digits --------------------------------------------------------------

def test_digits_sizes_values_and_classes():
    images, labels = load_digits("all")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    raw, _ = load_digits("all", normalize=False)
    assert raw.dtype == np.uint8 and raw.max() == 16
    np.testing.assert_array_equal(raw / 16.0, images)
    # the first image is a 0: ink around a hole in the middle
    assert labels[0] == 0 and raw[0, 0, 3:5, 3:5].max() <= 2 and raw[0, 0].sum() > 250
    assert DIGITS_CLASSES == tuple("0123456789")


def test_digits_split_is_disjoint_stratified_and_fixed():
    parts = {s: split_indices(s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1079, 359, 359]
    union = np.concatenate(list(parts.values()))
    assert sorted(union.tolist()) == list(range(1797))          # disjoint and complete
    _, labels = load_digits("all")
    for s, idx in parts.items():
        counts = np.bincount(labels[idx], minlength=10)
        share = counts / np.bincount(labels)
        assert counts.min() > 0
        assert np.allclose(share, {"train": 0.6, "val": 0.2, "test": 0.2}[s], atol=0.01)
    # the same on every call, and pinned: changing it would change everyone's results
    np.testing.assert_array_equal(split_indices("test"), parts["test"])
    assert parts["test"][:10].tolist() == [5, 8, 12, 19, 32, 33, 44, 47, 49, 59]
    cyconv.manual_seed(123)
    np.testing.assert_array_equal(load_digits("val")[1], labels[parts["val"]])
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits("validation")


def test_digits_dataset_and_returned_copies():
    ds = DigitsDataset("test")
    assert len(ds) == 359 and ds.classes[3] == "3"
    images, labels = next(iter(DataLoader(ds, batch_size=359)))
    assert images.shape == (359, 1, 8, 8) and labels.dtype == np.int64
    a, _ = load_digits("train")
    a[:] = -1
    assert load_digits("train")[0].min() == 0.0


def test_stratified_split_general():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, val = stratified_split(labels, (0.9, 0.1), salt=5)
    assert np.bincount(labels[val]).tolist() == [1, 2, 3]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 60
    with pytest.raises(ValueError, match="add up to 1"):
        stratified_split(labels, (0.5, 0.2))


# --- 5. MNIST IDX files ------------------------------------------------------------------

def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write(path, payload: bytes, gz: bool):
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _mnist_files(root, n=5, split="t10k", gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    _write(root / f"{split}-images-idx3-ubyte", _idx_bytes(images), gz)
    _write(root / f"{split}-labels-idx1-ubyte", _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_round_trip(tmp_path, gz):
    images, labels = _mnist_files(tmp_path, n=7, gz=gz)
    x, y = load_mnist(tmp_path, split="test")
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)
    assert y.dtype == np.int64 and y.tolist() == labels.tolist()
    raw, _ = load_mnist(tmp_path, split="test", kind="fashion", normalize=False)
    np.testing.assert_array_equal(raw[:, 0], images)


def test_mnist_dotted_names_and_raw_subfolder(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    (raw / "train-images.idx3-ubyte").write_bytes(_idx_bytes(images))
    (raw / "train-labels.idx1-ubyte").write_bytes(_idx_bytes(np.array([3, 9], np.uint8)))
    x, y = load_mnist(tmp_path, "train", kind="fashion", normalize=False)
    np.testing.assert_array_equal(x[:, 0], images)
    assert y.tolist() == [3, 9]


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*looked for"):
        load_mnist(tmp_path, split="test")
    _write(tmp_path / "t10k-images-idx3-ubyte", _idx_bytes(np.zeros((1, 28, 28))), True)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="directory not found"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist(tmp_path, split="val")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_malformed_files(tmp_path, gz):
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.zeros(3, np.uint8)
    cases = {
        "bad magic": (_idx_bytes(images, magic=0x00000801), "wrong magic number 0x00000801"),
        "not idx": (b"PK\x03\x04" + bytes(100), "not an IDX file"),
        "truncated": (_idx_bytes(images)[:-10], "truncated.*2352 bytes.*2342"),
        "too long": (_idx_bytes(images) + b"\0", "too long"),
        "short header": (struct.pack(">I", 0x803) + b"\0\0", "truncated header"),
        "empty": (b"", "too short"),
    }
    labels_path = _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(labels), gz)
    for payload, message in cases.values():
        path = _write(tmp_path / "train-images-idx3-ubyte", payload, gz)
        with pytest.raises(ValueError, match=message) as info:
            load_mnist(tmp_path)
        assert path.name in str(info.value)
    # images and labels disagree on the count
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(images), gz)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(4, np.uint8)), gz)
    with pytest.raises(ValueError, match="3 images but .*labels-idx1-ubyte.* 4 labels"):
        load_mnist(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.array([1, 2, 10], np.uint8)), gz)
    with pytest.raises(ValueError, match="label 10 is out of range"):
        load_mnist(tmp_path)
    assert labels_path.exists()


def test_damaged_gzip_and_read_idx(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 28, 28), np.uint8)))[:-12])
    with pytest.raises(ValueError, match="damaged gzip file") as info:
        read_idx(path)
    assert path.name in str(info.value)
    plain = tmp_path / "x.idx"
    plain.write_bytes(_idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3)))
    np.testing.assert_array_equal(read_idx(plain), np.arange(6).reshape(2, 3))


# --- 5b. CIFAR-10 pickles ----------------------------------------------------------------

def _cifar_batch(path, n, seed, protocol=2, **overrides):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", b"labels": rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
             b"filenames": [b"img_%d.png" % i for i in range(n)]}
    batch.update(overrides)
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)
    return batch


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_round_trip(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    folder.mkdir(exist_ok=True)
    train = [_cifar_batch(folder / f"data_batch_{i}", 3, i, protocol=2 + i % 4)
             for i in range(1, 6)]
    test = _cifar_batch(folder / "test_batch", 4, 9)
    x, y = load_cifar10(tmp_path, "train")
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert y.tolist() == sum((b[b"labels"] for b in train), [])
    data = np.concatenate([b[b"data"] for b in train])
    np.testing.assert_allclose(x * 255, data.reshape(15, 3, 32, 32), atol=1e-4)
    # the row holds the red plane, then green, then blue
    assert x[0, 1, 0, 0] * 255 == pytest.approx(data[0, 1024], abs=1e-3)
    raw, labels = load_cifar10(tmp_path, "test", normalize=False)
    np.testing.assert_array_equal(raw.reshape(4, -1), test[b"data"])
    assert labels.tolist() == test[b"labels"]


def test_cifar_pickle_from_numpy_1(tmp_path):
    """The real files name numpy.core (NumPy 1.x); read without numpy.core's warning."""
    batch = {b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"labels": [4, 2]}
    payload = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in payload
    (tmp_path / "test_batch").write_bytes(payload.replace(b"numpy._core.", b"numpy.core."))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw, labels = load_cifar10(tmp_path, "test", normalize=False)
    np.testing.assert_array_equal(raw.reshape(2, -1), batch[b"data"])
    assert labels.tolist() == [4, 2]


def test_cifar_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1, data_batch_2"):
        load_cifar10(tmp_path, "train")
    _cifar_batch(tmp_path / "data_batch_1", 2, 0)
    with pytest.raises(FileNotFoundError, match="not found in .*: data_batch_2"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be"):
        load_cifar10(tmp_path, "val")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content, message", [
    (b"this is not a pickle", "not a CIFAR-10 batch pickle"),
    ([1, 2, 3], "expected a pickled dict"),
    ({b"labels": [1]}, "missing key b'data'"),
    ({b"data": np.zeros((1, 3072), np.uint8)}, "missing key b'labels'"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]}, "shape \\(N, 3072\\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, "float32"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "2 images but 1 labels"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, "labels must be in 0..9"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]}, "list of ints"),
    ({b"data": _Evil(), b"labels": [1]}, "builtins.print"),
])
def test_cifar_malformed(tmp_path, capsys, content, message):
    path = tmp_path / "test_batch"
    path.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(tmp_path, "test")
    assert "test_batch" in str(info.value)
    assert "never run" not in capsys.readouterr().out


def test_cifar_truncated_pickle(tmp_path):
    _cifar_batch(tmp_path / "test_batch", 2, 0)
    data = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 batch pickle"):
        load_cifar10(tmp_path, "test")


# --- 6. get_dataset ----------------------------------------------------------------------

def test_get_dataset_digits():
    split = get_dataset("digits", "val")
    images, labels, names, shape = split
    assert images.shape == (359, 1, 8, 8) and shape == (1, 8, 8) and names == DIGITS_CLASSES
    np.testing.assert_array_equal(labels, load_digits("val")[1])


def test_get_dataset_files(tmp_path):
    _mnist_files(tmp_path, n=40, split="train", gz=False)
    _mnist_files(tmp_path, n=6, split="t10k", gz=True)
    train = get_dataset(f"fashion-mnist:{tmp_path}", "train")
    val = get_dataset(f"Fashion-MNIST:{tmp_path}", "val")
    test = get_dataset(f"mnist:{tmp_path}", "test")
    assert len(train.labels) + len(val.labels) == 40 and 0 < len(val.labels) < 10
    assert len(test.labels) == 6 and train.input_shape == (1, 28, 28)
    assert train.class_names == FASHION_MNIST_CLASSES and test.class_names[7] == "7"
    full = get_dataset(f"mnist:{tmp_path}", "train", val_fraction=0.0)
    assert len(full.labels) == 40
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 4, i)
    cifar = get_dataset(f"cifar10:{tmp_path}", "train")
    assert cifar.input_shape == (3, 32, 32) and cifar.class_names == CIFAR10_CLASSES


@pytest.mark.parametrize("spec, message", [
    ("imagenet:/data", "unknown dataset 'imagenet'"),
    ("mnist", "needs the directory.*mnist:DIR"),
    ("fashion-mnist:", "fashion-mnist:DIR"),
    ("cifar10", "cifar10:DIR"),
    ("digits:/tmp", "take no directory"),
    ("", "non-empty"),
])
def test_get_dataset_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        get_dataset(spec)


def test_get_dataset_split_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        get_dataset("digits", "validation")
    with pytest.raises(ValueError, match="split must be one of"):
        get_dataset(f"mnist:{tmp_path}", "all")
    with pytest.raises(FileNotFoundError, match="directory not found"):
        get_dataset(f"mnist:{tmp_path / 'missing'}")
