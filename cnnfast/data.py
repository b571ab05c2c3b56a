"""Data sets for the tutorial workflows, loaded whole into memory as tensors.

- ``digits``: the 1,797 8x8 handwritten digits that scikit-learn ships (no network), scaled to [0, 1],
  resized to 28x28 (bilinear) and split deterministically into 1,437 training and 360 test images
  (20 % of each class, chosen with a fixed seed that does not depend on the training seed).
- ``mnist``: MNIST in torchvision's on-disk layout, ``DIR/MNIST/raw/{train,t10k}-{images-idx3,
  labels-idx1}-ubyte`` (plain or ``.gz``; the files may also sit directly in ``DIR``).
- ``cifar10``: CIFAR-10 in torchvision's on-disk layout, ``DIR/cifar-10-batches-py/{data_batch_1..5,
  test_batch}`` (python pickles with ``data`` (N x 3072 uint8) and ``labels``).

``download=True`` fetches MNIST / CIFAR-10 with torchvision into ``DIR`` first (needs network).
Images are adapted to a model's input shape (resized, grey <-> RGB) and normalized per channel with
the training split's mean and standard deviation.
"""
import gzip
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DataError", "Split", "Dataset", "load", "download", "load_digits", "read_mnist", "read_cifar10",
           "adapt", "DATASETS", "MNIST_FILES", "CIFAR10_FILES"]

DATASETS = ("digits", "mnist", "cifar10")
DIGITS_SEED = 0           # the digits split never changes
DIGITS_TEST_FRACTION = 0.2
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DataError(RuntimeError):
    """A data set that is missing or not in the expected format; the message names the path."""


@dataclass
class Split:
    images: torch.Tensor  # (N, C, H, W) float32, normalized
    labels: torch.Tensor  # (N,) int64

    def __len__(self):
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list
    mean: torch.Tensor = field(default=None)  # (C,) subtracted from the [0, 1] images
    std: torch.Tensor = field(default=None)   # (C,) divided by

    def normalize(self, images):
        """[0, 1] images (N, C, H, W) -> the normalized model input."""
        return (images - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


# --- digits ----------------------------------------------------------------------------------------

def load_digits(size=28):
    """The scikit-learn digits as ``(train_images, train_labels), (test_images, test_labels)``, images
    (N, 1, size, size) float32 in [0, 1], split deterministically (20 % of each class for test)."""
    from sklearn.datasets import load_digits as sk_load_digits  # noqa: PLC0415

    d = sk_load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # values are 0..16
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    rng = np.random.default_rng(DIGITS_SEED)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        test_idx.extend(rng.permutation(idx)[: int(round(len(idx) * DIGITS_TEST_FRACTION))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    tr, te = torch.from_numpy(~is_test), torch.from_numpy(is_test)
    return (images[tr], labels[tr]), (images[te], labels[te])


# --- MNIST (torchvision layout) ---------------------------------------------------------------------

def _find(data_dir, names, where):
    """The first existing path among ``data_dir/<where>/<name>[.gz]``."""
    for folder in where:
        for name in names:
            for suffix in ("", ".gz"):
                p = os.path.join(data_dir, folder, name + suffix)
                if os.path.isfile(p):
                    return p
    return None


def _read_idx(path, ndim):
    """An IDX file (the MNIST format: 2 zero bytes, type code 0x08 = uint8, number of dimensions,
    the dimensions as big-endian int32, then the data) as a uint8 numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    header = 4 + 4 * ndim
    if len(raw) < header or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes (expected magic 0x0000080{ndim}, "
            f"got {raw[:4].hex() if len(raw) >= 4 else 'a file of ' + str(len(raw)) + ' bytes'})"
        )
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: its header says {dims} but the file has "
                        f"{len(raw)} bytes, not {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_mnist(data_dir, split):
    """MNIST ``split`` ('train' or 't10k' files for 'test') from ``data_dir`` in torchvision's layout:
    images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64."""
    image_name, label_name = MNIST_FILES[split]
    where = [os.path.join("MNIST", "raw"), ""]
    paths = []
    for name in (image_name, label_name):
        p = _find(data_dir, [name], where)
        if p is None:
            raise DataError(
                f"MNIST file {name} (or {name}.gz) not found in {os.path.join(data_dir, 'MNIST', 'raw')} "
                f"or {data_dir}: expected torchvision's MNIST layout, DIR/MNIST/raw/{{train,t10k}}-images-idx3-ubyte "
                f"and -labels-idx1-ubyte (use --download to fetch it)"
            )
        paths.append(p)
    images, labels = _read_idx(paths[0], 3), _read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{paths[1]} has label {int(labels.max())}; MNIST labels are 0..9")
    return (torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)))


# --- CIFAR-10 (torchvision layout) ------------------------------------------------------------------

def read_cifar10(data_dir, split):
    """CIFAR-10 ``split`` from ``data_dir/cifar-10-batches-py``: images (N, 3, 32, 32) float32 in
    [0, 1], labels (N,) int64."""
    folder = os.path.join(data_dir, CIFAR10_DIR)
    if not os.path.isdir(folder):
        raise DataError(
            f"CIFAR-10 folder {folder} not found: expected torchvision's CIFAR-10 layout, "
            f"DIR/{CIFAR10_DIR}/data_batch_1..5 and test_batch (use --download to fetch it)"
        )
    images, labels = [], []
    for name in CIFAR10_FILES[split]:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DataError(f"CIFAR-10 batch file {path} not found (expected {', '.join(CIFAR10_FILES[split])} in {folder})")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
        except Exception as e:  # noqa: BLE001  (any unpickling failure means a corrupt file)
            raise DataError(f"cannot read CIFAR-10 batch {path}: {type(e).__name__}: {e}") from e
        if not isinstance(batch, dict) or "data" not in batch or not ("labels" in batch or "fine_labels" in batch):
            raise DataError(f"CIFAR-10 batch {path} is not a dict with 'data' and 'labels'")
        data = np.asarray(batch["data"])
        lab = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(lab):
            raise DataError(f"CIFAR-10 batch {path} has data of shape {data.shape} ({data.dtype}) and "
                            f"{len(lab)} labels; expected N x 3072 uint8 and N labels")
        if lab.size and (lab.min() < 0 or lab.max() > 9):
            raise DataError(f"CIFAR-10 batch {path} has labels outside 0..9")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return (torch.from_numpy(np.concatenate(images).astype(np.float32) / 255.0),
            torch.from_numpy(np.concatenate(labels)))


def download(name, data_dir):
    """Fetch MNIST or CIFAR-10 (both splits) into ``data_dir`` with torchvision (needs network);
    nothing to do for the digits."""
    if name == "digits":
        return
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir is None:
        raise DataError(f"--download of {name} needs --data-dir DIR to download into")
    import torchvision  # noqa: PLC0415

    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    os.makedirs(data_dir, exist_ok=True)
    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    for train in (True, False):
        try:
            cls(data_dir, train=train, download=True)
        except Exception as e:  # noqa: BLE001  (network errors come in many types)
            raise DataError(f"downloading {name} into {data_dir} failed: {type(e).__name__}: {e}") from e


_fetch = download  # for load(), whose argument of that name hides the function


# --- common ----------------------------------------------------------------------------------------

def adapt(images, shape):
    """[0, 1] images (N, C, H, W) -> shape (C', H', W'): bilinear resize, grey repeated to RGB or RGB
    averaged with the ITU-R 601 luma weights to grey."""
    c, h, w = shape
    if images.shape[1] != c:
        if images.shape[1] == 1:
            images = images.expand(-1, c, -1, -1)
        elif images.shape[1] == 3 and c == 1:
            images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot adapt {images.shape[1]}-channel images to {c} channels")
    if tuple(images.shape[-2:]) != (h, w):
        images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return images.contiguous()


def load(name, data_dir=None, shape=None, download=False):
    """Data set ``name`` ('digits', 'mnist' or 'cifar10') as a :class:`Dataset`, adapted to ``shape``
    (C, H, W) when given and normalized with the training split's per-channel mean and std."""
    if name == "digits":
        (xtr, ytr), (xte, yte) = load_digits()
        classes = [str(i) for i in range(10)]
    elif name in ("mnist", "cifar10"):
        if data_dir is None:
            raise DataError(f"--data {name} needs --data-dir DIR (torchvision's on-disk layout; add --download to fetch it)")
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
        if download:
            _fetch(name, data_dir)
        if not os.path.isdir(data_dir):
            raise DataError(f"data directory {data_dir} does not exist (for --data {name}; add --download to fetch it)")
        reader = read_mnist if name == "mnist" else read_cifar10
        (xtr, ytr), (xte, yte) = reader(data_dir, "train"), reader(data_dir, "test")
        classes = [str(i) for i in range(10)] if name == "mnist" else list(CIFAR10_CLASSES)
    else:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    if len(ytr) == 0 or len(yte) == 0:
        raise DataError(f"data set {name} in {data_dir} has an empty split ({len(ytr)} train, {len(yte)} test images)")
    if shape is not None:
        xtr, xte = adapt(xtr, shape), adapt(xte, shape)
    mean = xtr.mean(dim=(0, 2, 3))
    std = xtr.std(dim=(0, 2, 3)).clamp_min(1e-6)
    ds = Dataset(name, None, None, classes, mean, std)
    ds.train, ds.test = Split(ds.normalize(xtr), ytr), Split(ds.normalize(xte), yte)
    return ds
