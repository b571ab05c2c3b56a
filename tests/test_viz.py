"""cnnfast viz: the files are written, index.html shows them in order, and every plotted array is
the real activation, checked against torch.nn.functional by hand and against hooks on a torch model."""
import argparse
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnfast import train, viz
from cnnfast.models import get_model

# cnnfast's kernels vs torch's in fp32 differ only in summation order (conv sums of at most
# 16*25 = 400 products, or 3*10*10 = 300 for the cat's kernel-10 conv, over inputs of magnitude
# <= ~3): a few ulps of partial sums of magnitude <= ~50, so 1e-4 relative / 1e-4 absolute.
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores a second spinning thread only slows these small
    models down, and results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*argv):
    parser = argparse.ArgumentParser(prog="cnnfast viz")
    viz.add_arguments(parser)
    return viz.run(parser.parse_args([str(a) for a in argv]))


def by_path(book, section):
    return {f.data["path"]: f.data["output"] for f in book.figures if f.section == section and "path" in f.data}


def check_files(book, out):
    import matplotlib.image as mpimg

    for f in book.figures:
        img = mpimg.imread(os.path.join(out, f.file))
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, f.file
    with open(os.path.join(out, "index.html")) as fh:
        page = fh.read()
    assert re.findall(r"<img src='([^']+)'", page) == [f.file for f in book.figures]
    for f in book.figures:
        assert f.caption.split(":")[0][:20] in page.replace("&#x27;", "'")


def save_checkpoint(path, name, seed, **kw):
    torch.manual_seed(seed)
    model = get_model(name, fast=False, **kw)
    torch.save({"format": train.CHECKPOINT_FORMAT, "model_name": name, "model_kwargs": kw,
                "model": model.state_dict(), "optimizer": {}, "epoch": 3, "data": "digits",
                "mean": [0.25] * model.input_shape[0], "std": [0.5] * model.input_shape[0],
                "classes": [str(i) for i in range(10)], "metrics": {"test_acc": 0.5}}, path)
    return model


def test_lenet_maps_are_the_real_activations(tmp_path):
    ck = tmp_path / "lenet.pt"
    ref = save_checkpoint(ck, "lenet", seed=7)
    book = viz.make(str(tmp_path / "out"), ["lenet"], fast=True, checkpoint=str(ck))
    check_files(book, str(tmp_path / "out"))
    figs = {f.file.split("-", 2)[-1][:-4]: f for f in book.figures}
    raw = figs["input"].data["input"]
    assert raw.shape == (1, 28, 28)
    # LeNet-5 by hand with torch.nn.functional on the checkpoint's weights and normalization.
    p = dict(ref.named_parameters())
    x = ((raw - 0.25) / 0.5).unsqueeze(0)
    want = {}
    want["features.conv1"] = F.conv2d(x, p["features.conv1.weight"], p["features.conv1.bias"], padding=2)
    want["features.relu1"] = F.relu(want["features.conv1"])
    want["features.pool1"] = F.max_pool2d(want["features.relu1"], 2)
    want["features.conv2"] = F.conv2d(want["features.pool1"], p["features.conv2.weight"], p["features.conv2.bias"])
    want["features.relu2"] = F.relu(want["features.conv2"])
    want["features.pool2"] = F.max_pool2d(want["features.relu2"], 2)
    got = by_path(book, "lenet")
    assert list(got) == list(want)  # one figure per conv/ReLU/pool layer, in the order they run
    for k, v in want.items():
        torch.testing.assert_close(got[k], v[0].detach(), **TOL, msg=lambda m, k=k: f"{k}: {m}")
    torch.testing.assert_close(figs["filters"].data["weight"], p["features.conv1.weight"].detach(), rtol=0, atol=0)
    # The titles name the layer path and the shape.
    titles = [f.title for f in book.figures if "path" in f.data]
    assert titles[0] == "features.conv1 (cnnfast Conv2d) output 6x28x28"
    assert titles[-1] == "features.pool2 (cnnfast MaxPool2d) output 16x5x5"
    logits = ref(x)
    torch.testing.assert_close(figs["prediction"].data["probs"], torch.softmax(logits[0], 0).detach(), **TOL)


@pytest.mark.parametrize("name,kw", [("mnist-cnn", {}), ("resnet-cifar", {"blocks_per_stage": 1})])
def test_model_maps_match_torch_hooks(tmp_path, name, kw):
    ck = tmp_path / "m.pt"
    ref = save_checkpoint(ck, name, seed=3, **kw).eval()
    book = viz.make(str(tmp_path / "out"), [name], fast=True, checkpoint=str(ck))
    raw = book.figures[0].data["input"]
    x = ((raw - 0.25) / 0.5).unsqueeze(0)
    seen = {}
    for path, m in ref.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            m.register_forward_hook(lambda mod, i, o, path=path: seen.__setitem__(path, o.detach()))
    with torch.no_grad():
        ref(x)
    got = by_path(book, name)
    assert list(got) == list(seen)
    for k, v in seen.items():
        # ResNet: up to 9 convs deep with BN between; relative error grows ~linearly with depth.
        torch.testing.assert_close(got[k], v[0], rtol=1e-4, atol=5e-4 if name == "resnet-cifar" else 1e-4,
                                   msg=lambda m, k=k: f"{k}: {m}")
    check_files(book, str(tmp_path / "out"))


def _correlate(img, k):
    """Valid 2-D cross-correlation in float64 numpy, by the definition."""
    kh, kw = k.shape
    h, w = img.shape[0] - kh + 1, img.shape[1] - kw + 1
    out = np.zeros((h, w))
    for i in range(kh):
        for j in range(kw):
            out += k[i, j] * img[i:i + h, j:j + w]
    return out


@pytest.mark.slow
def test_edges_by_hand(tmp_path):
    book = viz.make(str(tmp_path), ["edges"], fast=True)
    check_files(book, str(tmp_path))
    figs = {f.title: f for f in book.figures}
    img = book.figures[0].data["input"][0].double().numpy()
    assert img.shape == (300, 451)
    for name, k, _ in viz.CLASSIC_FILTERS:
        out = figs[f"{name} filter"].data["output"].double().numpy()
        # fp32 sums of 9 products of values <= 1 with weights <= 5: error <= ~1e-6.
        np.testing.assert_allclose(out, _correlate(img, np.array(k, dtype=np.float64)), rtol=0, atol=1e-5)
    sx = _correlate(img, np.array(viz.CLASSIC_FILTERS[0][1], float))
    sy = _correlate(img, np.array(viz.CLASSIC_FILTERS[1][1], float))
    np.testing.assert_allclose(figs["Sobel gradient magnitude"].data["output"].numpy(), np.hypot(sx, sy), rtol=0, atol=1e-5)
    # The hand-set detector: a vertical edge filter, its negative, its transpose and minus that.
    w = figs["edge detector: 4 filters 4x4, set by hand"].data["weight"].double().numpy()[:, 0]
    v = np.array([[-1, -1, 1, 1]] * 4, float)
    np.testing.assert_array_equal(w, np.stack([v, -v, v.T, -v.T]))
    conv = np.stack([_correlate(img, k) for k in w])
    relu = np.maximum(conv, 0)
    pool = relu[:, :relu.shape[1] // 2 * 2, :relu.shape[2] // 2 * 2]
    pool = pool.reshape(4, relu.shape[1] // 2, 2, relu.shape[2] // 2, 2).max(axis=(2, 4))
    got = by_path(book, "edges")
    assert list(got) == ["conv", "relu", "pool"]
    # 16 products of values <= 1 with weights +-1: fp32 error <= ~2e-6.
    for k, want in (("conv", conv), ("relu", relu), ("pool", pool)):
        np.testing.assert_allclose(got[k].double().numpy(), want, rtol=0, atol=1e-5, err_msg=k)
    assert got["pool"].shape == (4, 148, 224)


@pytest.mark.slow
def test_cat_walkthrough(tmp_path):
    book = viz.make(str(tmp_path), ["cat"], fast=True, seed=5)
    check_files(book, str(tmp_path))
    photo = book.figures[0].data["input"]
    assert photo.shape == (3, 300, 451)
    from skimage import data as skdata

    np.testing.assert_array_equal((photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), skdata.chelsea())
    walk, lenet = viz.cat_walk(fast=False, seed=5)  # the same random weights, on torch's layers
    x = photo.unsqueeze(0)
    with torch.no_grad():
        k3 = F.conv2d(x, walk.conv_k3.weight, walk.conv_k3.bias)
        k10 = F.conv2d(x, walk.conv_k10.weight, walk.conv_k10.bias)
        pool = F.max_pool2d(F.relu(k3), 5)
    got = by_path(book, "cat")
    assert got["conv_k3"].shape == (3, 298, 449) and got["conv_k10"].shape == (3, 291, 442)
    assert got["pool"].shape == (3, 59, 89)
    for k, v in (("conv_k3", k3), ("conv_k10", k10), ("relu", F.relu(k3)), ("pool", pool)):
        torch.testing.assert_close(got[k], v[0], **TOL, msg=lambda m, k=k: f"{k}: {m}")
    seen = {}
    for path, m in lenet.features.named_children():
        m.register_forward_hook(lambda mod, i, o, path=path: seen.__setitem__("features." + path, o.detach()))
    grey = (photo * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    with torch.no_grad():
        lenet.features(grey.unsqueeze(0))
    assert [k for k in got if k.startswith("features.")] == list(seen)
    assert seen["features.pool2"].shape == (1, 16, 73, 110)
    for k, v in seen.items():
        torch.testing.assert_close(got[k], v[0], **TOL, msg=lambda m, k=k: f"{k}: {m}")


def test_user_image_and_errors(tmp_path, capsys):
    from PIL import Image

    # A dark 7-like stroke on white paper, as a user would photograph it.
    a = np.full((40, 30), 255, np.uint8)
    a[5:9, 5:25] = 0
    a[5:35, 20:24] = 0
    Image.fromarray(a).save(tmp_path / "seven.png")
    assert cli("--model", "lenet", "--image", tmp_path / "seven.png", "--out", tmp_path / "o", "--no-fast") == 0
    assert "wrote 9 figures" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "o" / "index.html")
    book = viz.make(str(tmp_path / "o2"), ["lenet"], fast=False, image_path=str(tmp_path / "seven.png"))
    raw = book.figures[0].data["input"]
    assert raw.shape == (1, 28, 28) and float(raw.mean()) < 0.5  # inverted to light-on-dark
    assert "inverted" in book.figures[0].caption

    assert cli("--model", "lenet", "--image", tmp_path / "nope.png", "--out", tmp_path / "o") == 2
    assert f"--image {tmp_path / 'nope.png'}: file not found" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert cli("--model", "edges", "--image", tmp_path / "bad.png", "--out", tmp_path / "o") == 2
    assert f"--image {tmp_path / 'bad.png'}: not a readable PNG/JPEG image" in capsys.readouterr().err
    save_checkpoint(tmp_path / "l.pt", "lenet", seed=0)
    assert cli("--model", "mnist-cnn", "--checkpoint", tmp_path / "l.pt", "--out", tmp_path / "o") == 2
    assert "holds a 'lenet' model, not 'mnist-cnn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("--model", "vgg")
    assert "invalid choice: 'vgg'" in capsys.readouterr().err


def test_cnnfast_command_viz(tmp_path, capsys):
    from cnnfast.cli import main

    assert main(["viz", "--model", "mnist-cnn", "--out", str(tmp_path)]) == 0
    assert "wrote 9 figures" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "index.html"
