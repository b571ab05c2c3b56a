"""cnnfast.data: the digits split, and MNIST / CIFAR-10 read from small files written in
torchvision's on-disk formats, checked against torchvision's own readers."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from cnnfast import data


def write_mnist(root, n_train=40, n_test=20, seed=0, gz=False, folder=("MNIST", "raw")):
    """MNIST in torchvision's layout (IDX files in ROOT/MNIST/raw); returns the arrays written."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, *folder)
    os.makedirs(d, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
            name = os.path.join(d, f"{split}-{kind}-ubyte")
            opener, name = (gzip.open, name + ".gz") if gz else (open, name)
            with opener(name, "wb") as f:
                f.write(header + arr.tobytes())
        arrays[split] = (images, labels)
    return arrays


def write_cifar10(root, n_per_batch=6, seed=0):
    """CIFAR-10 in torchvision's layout (pickled batches in ROOT/cifar-10-batches-py)."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    written = {}
    for name in data.CIFAR10_FILES["train"] + data.CIFAR10_FILES["test"]:
        batch = {"batch_label": name, "data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, size=n_per_batch).tolist(), "filenames": [f"{i}.png" for i in range(n_per_batch)]}
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump(batch, f)
        written[name] = batch
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": data.CIFAR10_CLASSES, "num_cases_per_batch": n_per_batch, "num_vis": 3072}, f)
    return written


def test_digits_split_is_deterministic_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    (xtr, ytr), (xte, yte) = data.load_digits(size=8)
    sk = load_digits()
    assert len(ytr) + len(yte) == 1797 and len(yte) == 359
    # Every sklearn image appears exactly once across the two splits, scaled from 0..16 to [0, 1].
    all_x = torch.cat([xtr, xte]).flatten(1).numpy() * 16
    assert sorted(map(bytes, all_x.astype(np.uint8))) == sorted(map(bytes, sk.data.astype(np.uint8)))
    for c in range(10):  # 20 % of each class, rounded
        assert int((yte == c).sum()) == round(int((sk.target == c).sum()) * 0.2)
    (xtr2, ytr2), (xte2, yte2) = data.load_digits(size=8)
    assert torch.equal(xte, xte2) and torch.equal(ytr, ytr2)


def test_digits_resize_is_bilinear_by_hand():
    (x8, _), _ = data.load_digits(size=8)
    (x28, _), _ = data.load_digits(size=28)
    assert x28.shape[1:] == (1, 28, 28) and float(x28.min()) >= 0 and float(x28.max()) <= 1
    # Half-pixel-centre bilinear: output row i samples source row (i + 0.5) * 8 / 28 - 0.5.
    img = x8[0, 0].double().numpy()
    for i, j in [(0, 0), (5, 9), (13, 14), (27, 27), (20, 3)]:
        def src(k):
            s = min(max((k + 0.5) * 8 / 28 - 0.5, 0.0), 7.0)
            lo = int(np.floor(s))
            hi = min(lo + 1, 7)
            return lo, hi, s - lo
        r0, r1, fr = src(i)
        c0, c1, fc = src(j)
        want = ((1 - fr) * ((1 - fc) * img[r0, c0] + fc * img[r0, c1]) + fr * ((1 - fc) * img[r1, c0] + fc * img[r1, c1]))
        assert abs(float(x28[0, 0, i, j]) - want) < 1e-6  # float32 arithmetic on values <= 1


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reader_matches_torchvision(tmp_path, gz):
    torchvision = pytest.importorskip("torchvision")

    written = write_mnist(str(tmp_path), gz=gz)
    for split, train in (("train", True), ("test", False)):
        x, y = data.read_mnist(str(tmp_path), split)
        images, labels = written["train" if train else "t10k"]
        assert torch.equal(x, torch.from_numpy(images).float().div(255).unsqueeze(1))
        assert torch.equal(y, torch.from_numpy(labels).long())
        if not gz:  # torchvision reads the uncompressed files (it unpacks .gz when downloading)
            tv = torchvision.datasets.MNIST(str(tmp_path), train=train, download=False)
            assert torch.equal(tv.data, (x[:, 0] * 255).round().to(torch.uint8))
            assert torch.equal(tv.targets, y)


def test_mnist_files_directly_in_data_dir(tmp_path):
    write_mnist(str(tmp_path), folder=())
    assert data.read_mnist(str(tmp_path), "test")[0].shape == (20, 1, 28, 28)


def test_cifar10_reader_matches_torchvision(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")

    write_cifar10(str(tmp_path))
    # torchvision checks the real files' md5 sums; these small files are only checked for format.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    for split, train in (("train", True), ("test", False)):
        x, y = data.read_cifar10(str(tmp_path), split)
        tv = torchvision.datasets.CIFAR10(str(tmp_path), train=train, download=False)
        assert x.shape == (len(tv.data), 3, 32, 32)
        # torchvision keeps HWC uint8.
        assert torch.equal(torch.from_numpy(tv.data).permute(0, 3, 1, 2), (x * 255).round().to(torch.uint8))
        assert y.tolist() == list(tv.targets)


def test_load_adapts_and_normalizes(tmp_path):
    write_mnist(str(tmp_path))
    ds = data.load("mnist", str(tmp_path), shape=(3, 32, 32))
    assert ds.train.images.shape == (40, 3, 32, 32) and ds.test.images.shape == (20, 3, 32, 32)
    # Normalized with the training split's own per-channel statistics: mean 0, std 1 (float32 sums
    # of 40k values: ~1e-6 error, far inside 1e-4).
    torch.testing.assert_close(ds.train.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(ds.train.images.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)
    # Grey repeated to RGB: the three channels are equal.
    assert torch.equal(ds.train.images[:, 0], ds.train.images[:, 2])
    digits = data.load("digits", shape=(1, 28, 28))
    assert digits.train.images.shape == (1438, 1, 28, 28) and digits.classes == [str(i) for i in range(10)]


def test_missing_and_corrupt_data_errors(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(data.DataError, match=f"data directory {missing} does not exist"):
        data.load("mnist", missing)
    with pytest.raises(data.DataError, match="--data mnist needs --data-dir"):
        data.load("mnist", None)
    with pytest.raises(data.DataError, match=r"MNIST file train-images-idx3-ubyte \(or .*\.gz\) not found in .*MNIST/raw"):
        data.read_mnist(str(tmp_path), "train")
    with pytest.raises(data.DataError, match=r"CIFAR-10 folder .*cifar-10-batches-py not found"):
        data.read_cifar10(str(tmp_path), "train")

    write_mnist(str(tmp_path))
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(data.DataError, match=rf"{path} is truncated or corrupt: its header says \[20, 28, 28\]"):
        data.read_mnist(str(tmp_path), "test")
    path.write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(data.DataError, match=rf"{path} is not an IDX file .*504b0304"):
        data.read_mnist(str(tmp_path), "test")

    write_cifar10(str(tmp_path))
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(data.DataError, match=f"cannot read CIFAR-10 batch {bad}"):
        data.read_cifar10(str(tmp_path), "train")
    with open(bad, "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(data.DataError, match=rf"{bad} has data of shape \(2, 100\)"):
        data.read_cifar10(str(tmp_path), "train")
    with pytest.raises(data.DataError, match="unknown data set 'svhn'"):
        data.load("svhn")
