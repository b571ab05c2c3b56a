"""Draw what each layer sees (filters, feature maps, edge filters, a cat photo) as PNGs and index.html.

Filters, feature maps, classic edge filters and a photo of a cat passed through convolution, ReLU
and pooling, as PNG figures (matplotlib) with an index.html showing them in order with captions.

Sections (``--model``): ``lenet``, ``mnist-cnn``, ``resnet-cifar`` (the first layer's filters, then the
output of every conv, ReLU and pooling layer for one input image, one figure per layer),
``edges`` (Sobel and other classic 3x3 filters, and a hand-set 4-filter edge detector followed by ReLU
and max-pooling, all run with cnnfast's conv2d), ``cat`` (random 3-filter convolutions with kernel 3
and 10 shown as RGB images, ReLU, max-pooling, then LeNet's conv and pool sections) or ``all``.
The default image is scikit-image's cat (``skimage.data.chelsea``); the digit models default to a
handwritten digit from the test split of the digits data set.
"""
import argparse
import html
import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

SECTIONS = ("lenet", "mnist-cnn", "resnet-cifar", "edges", "cat")
# CIFAR-10 per-channel statistics (training split), used for resnet-cifar without a checkpoint.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
VIZ_KINDS = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d)

# Classic 3x3 filters (name, kernel, what it shows).
CLASSIC_FILTERS = [
    ("Sobel x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "horizontal intensity changes: vertical edges"),
    ("Sobel y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "vertical intensity changes: horizontal edges"),
    ("Laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "second derivative: edges in every direction"),
    ("Sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "the image plus its negative Laplacian"),
    ("Box blur", [[1 / 9] * 3] * 3, "the mean of each 3x3 neighbourhood"),
    ("Emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "a diagonal derivative plus the image"),
]
# The hand-set 4x4 edge detector of the classic "visualizing a conv layer" tutorial: a vertical
# edge (dark left, light right), its negative, and the two transposes.
EDGE_4X4 = [[-1, -1, 1, 1]] * 4


def add_arguments(parser):
    parser.add_argument("--model", choices=SECTIONS + ("all",), default=None,
                        help="what to draw (default: all, or the checkpoint's model with --checkpoint)")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="weights from `cnnfast train` (default: freshly initialized weights)")
    parser.add_argument("--image", default=None, metavar="PATH",
                        help="PNG/JPEG input (default: scikit-image's cat; a digit for the digit models)")
    parser.add_argument("--out", default="viz", metavar="DIR", help="output folder (default: %(default)s)")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                        help="cnnfast's layers and conv2d (default) or torch's (--no-fast)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights (default: 0)")


# --- figures ---------------------------------------------------------------------------------------

@dataclass
class Figure:
    section: str
    file: str       # PNG name inside the output folder
    title: str
    caption: str
    data: dict = field(default_factory=dict)  # name -> the tensor(s) plotted, exactly as plotted


class Book:
    """Collects figures in order, writes each PNG as it comes and ``index.html`` at the end."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.figures = []
        self.sections = OrderedDict()  # section -> intro text
        os.makedirs(out_dir, exist_ok=True)

    def section(self, name, intro):
        self.sections[name] = intro

    def add(self, section, slug, title, caption, fig, **data):
        import matplotlib.pyplot as plt  # noqa: PLC0415

        n = sum(f.section == section for f in self.figures)
        name = f"{section}-{n:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', slug).strip('-').lower()}.png"
        fig.savefig(os.path.join(self.out_dir, name), dpi=72)
        plt.close(fig)
        self.figures.append(Figure(section, name, title, caption, data))

    def write_index(self):
        parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>cnnfast viz</title>",
                 "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
                 "figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}"
                 "figcaption{color:#333}</style></head><body>", "<h1>What each layer sees</h1>"]
        toc = "".join(f"<li><a href='#{s}'>{s}</a></li>" for s in self.sections)
        parts.append(f"<ul>{toc}</ul>")
        for s, intro in self.sections.items():
            parts.append(f"<h2 id='{s}'>{html.escape(s)}</h2><p>{html.escape(intro)}</p>")
            for i, f in enumerate(x for x in self.figures if x.section == s):
                parts.append(f"<figure><img src='{html.escape(f.file)}' alt='{html.escape(f.title)}'>"
                             f"<figcaption><b>{i + 1}. {html.escape(f.title)}</b>. {html.escape(f.caption)}"
                             f"</figcaption></figure>")
        parts.append("</body></html>")
        path = os.path.join(self.out_dir, "index.html")
        with open(path, "w") as fh:
            fh.write("\n".join(parts) + "\n")
        return path


def _np(t):
    return t.detach().cpu().double().numpy()


def _norm01(a):
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else a * 0 + 0.5


def mosaic(maps, pad=1):
    """(C, H, W) maps -> one 2-D array tiling them in a near-square grid, each map scaled to [0, 1]
    on its own, gaps NaN."""
    import numpy as np  # noqa: PLC0415

    maps = _np(maps)
    c, h, w = maps.shape
    cols = int(np.ceil(np.sqrt(c)))
    rows = -(-c // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan)
    for i in range(c):
        r, q = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = _norm01(maps[i])
    return out, rows, cols


def fig_maps(maps, title):
    """Feature maps (C, H, W): a grid, one tile per channel, each with its own grey scale."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    img, rows, cols = mosaic(maps)
    c, h, w = maps.shape
    scale = 7.0 / max(img.shape)
    fig, ax = plt.subplots(figsize=(max(img.shape[1] * scale, 3.5), img.shape[0] * scale + 0.7))
    cmap = plt.get_cmap("gray").with_extremes(bad="#3b6ea8")
    ax.imshow(img, cmap=cmap, interpolation="nearest")
    if c > 1 and h >= 6:
        for i in range(c):
            r, q = divmod(i, cols)
            ax.text(q * (w + 1) + 0.5, r * (h + 1) + 0.5, str(i), color="#ffcc00", fontsize=7, va="top", ha="left")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def fig_rgb(image, title):
    """A 3-channel map or image (3, H, W) as one RGB picture (all channels scaled together)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    a = _norm01(_np(image)).transpose(1, 2, 0)
    h, w = a.shape[:2]
    fig, ax = plt.subplots(figsize=(6.0 * w / max(h, w) + 0.3, 6.0 * h / max(h, w) + 0.6))
    ax.imshow(a, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def fig_filters(weight, title, numbers=False):
    """Filters (O, I, kh, kw) as a grid: RGB when I == 3, grey (input channel 0) otherwise; with
    ``numbers`` each weight is written in its cell."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    w = _np(weight)
    o = w.shape[0]
    cols = min(o, 8)
    rows = -(-o // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.4, 1.3 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= o:
            continue
        if w.shape[1] == 3:
            ax.imshow(_norm01(w[i]).transpose(1, 2, 0), interpolation="nearest")
        else:
            ax.imshow(w[i, 0], cmap="gray", interpolation="nearest")
            if numbers:
                for (r, c), v in np.ndenumerate(w[i, 0]):
                    ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7,
                            color="white" if v < w[i, 0].mean() else "black")
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def fig_kernel_and_result(kernel, result, title):
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    k, r = _np(kernel), _np(result)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 3]})
    a0.imshow(k, cmap="gray", interpolation="nearest")
    for (i, j), v in np.ndenumerate(k):
        a0.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=8, color="red")
    a0.set_title("kernel", fontsize=8)
    a1.imshow(r, cmap="gray", interpolation="nearest")
    a1.set_title(f"output {r.shape[0]}x{r.shape[1]}", fontsize=8)
    for a in (a0, a1):
        a.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def fig_image(image, title):
    """An input image (C, H, W) in [0, 1] or normalized."""
    if image.shape[0] == 3:
        return fig_rgb(image, title)
    return fig_maps(image, title)


def fig_probs(probs, classes, title):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    p = _np(probs)
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.bar(range(len(p)), p, color="#3b6ea8")
    ax.set_xticks(range(len(p)), classes, fontsize=7, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# --- activations -----------------------------------------------------------------------------------

def capture(model, x, kinds=VIZ_KINDS):
    """Run ``model(x)`` with forward hooks on every module of one of ``kinds``; returns the output
    and the list of ``(path, module, output)`` in the order the layers ran."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, path=path: seen.append((path, mod, out.detach().clone())))
             for path, m in model.named_modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, seen


def describe(path, module):
    kind = type(module).__name__
    origin = "cnnfast" if type(module).__module__.startswith("cnnfast") else "torch"
    return f"{path} ({origin} {kind})"


# --- inputs ----------------------------------------------------------------------------------------

def load_image(path):
    """A PNG/JPEG file as a (C, H, W) float tensor in [0, 1] (C = 3, or 1 for grey files)."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--image {path}: file not found")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("L", "I", "I;16", "1") else "RGB")
            a = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"--image {path}: not a readable PNG/JPEG image ({e})") from e
    t = torch.from_numpy(a.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def cat_image():
    """scikit-image's photo of Chelsea the cat, (3, 300, 451) in [0, 1]."""
    from skimage import data as skdata  # noqa: PLC0415

    return torch.from_numpy(skdata.chelsea().astype("float32") / 255.0).permute(2, 0, 1).contiguous()


def digit_image(index=0):
    """The ``index``-th handwritten digit of the digits test split, (1, 28, 28) in [0, 1], and its label."""
    from .data import load_digits  # noqa: PLC0415

    _, (x, y) = load_digits()
    return x[index], int(y[index])


# --- sections --------------------------------------------------------------------------------------

def _conv2d(fast):
    if fast:
        from .functional import conv2d  # noqa: PLC0415

        return conv2d
    return torch.nn.functional.conv2d


def section_model(book, name, fast, checkpoint=None, image=None, seed=0):
    """Filters and per-layer feature maps of one model for one image."""
    from . import data as data_mod  # noqa: PLC0415
    from .models import get_model  # noqa: PLC0415

    kw, mean, std, classes, trained = {}, None, None, [str(i) for i in range(10)], "freshly initialized (seed %d)" % seed
    state = None
    if checkpoint is not None:
        from .train import load_checkpoint  # noqa: PLC0415

        ck = load_checkpoint(checkpoint)
        if ck["model_name"] != name:
            raise ValueError(f"--checkpoint {checkpoint} holds a {ck['model_name']!r} model, not {name!r}")
        kw, state, classes = ck["model_kwargs"], ck["model"], ck.get("classes", classes)
        mean, std = torch.tensor(ck["mean"]), torch.tensor(ck["std"])
        m = ck.get("metrics") or {}
        trained = f"trained on {ck.get('data')} for {ck['epoch']} epoch(s)" + (
            f", test accuracy {m['test_acc']:.2%}" if "test_acc" in m else "")
    torch.manual_seed(seed)
    model = get_model(name, fast=fast, **kw).eval()
    if state is not None:
        model.load_state_dict(state)
    shape = model.input_shape
    if mean is None:
        if shape[0] == 1:
            (xtr, _), _ = data_mod.load_digits()
            mean, std = xtr.mean().view(1), xtr.std().view(1)
        else:
            mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
            classes = list(data_mod.CIFAR10_CLASSES)

    note = ""
    if image is not None:
        raw = data_mod.adapt(image.unsqueeze(0), shape)[0]
        if shape[0] == 1 and float(raw.mean()) > 0.5:
            raw = 1 - raw  # the digits are light strokes on a dark background
            note = " (inverted: the digits are light on dark)"
        what = "the given image" + note
    elif shape[0] == 1:
        raw, label = digit_image(0)
        what = f"a handwritten {label} from the digits test split"
    else:
        raw = data_mod.adapt(cat_image().unsqueeze(0), shape)[0]
        what = "scikit-image's cat, resized to 32x32"
    x = ((raw - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)).unsqueeze(0)

    layers_kind = "cnnfast" if fast else "torch"
    book.section(name, f"{type(model).__name__} ({layers_kind} layers, {trained}) looking at {what}. "
                       f"Each feature-map figure tiles the channels of one layer's output, each channel "
                       f"on its own grey scale (black: its minimum, white: its maximum).")
    book.add(name, "input", f"{name} input {'x'.join(map(str, shape))}", f"The input: {what}.",
             fig_image(raw, f"{name} input {tuple(shape)}"), input=raw)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_path = next(p for p, m in model.named_modules() if m is first)
    book.add(name, "filters", f"{first_path} filters {tuple(first.weight.shape)}",
             f"The first layer's {first.out_channels} filters ({first.kernel_size[0]}x{first.kernel_size[1]}"
             f"{', RGB' if first.in_channels == 3 else ''}), {trained}.",
             fig_filters(first.weight, f"{first_path}: {first.out_channels} filters "
                                       f"{first.kernel_size[0]}x{first.kernel_size[1]}"),
             weight=first.weight.detach().clone())
    y, acts = capture(model, x)
    for path, mod, out in acts:
        if out.dim() != 4:
            continue  # the ReLUs between fully connected layers have no maps to draw
        t = f"{describe(path, mod)} output {'x'.join(map(str, out.shape[1:]))}"
        book.add(name, path, t, f"Feature maps after {path}: {out.shape[1]} channels of "
                                f"{out.shape[2]}x{out.shape[3]}.", fig_maps(out[0], t), output=out[0], path=path)
    probs = torch.softmax(y[0], 0)
    book.add(name, "prediction", f"{name} prediction: {classes[int(probs.argmax())]}",
             "The softmax of the model's output.", fig_probs(probs, classes, f"{name}: class probabilities"),
             probs=probs)
    return model, x


def _gray(image):
    from .data import adapt  # noqa: PLC0415

    return adapt(image.unsqueeze(0), (1,) + tuple(image.shape[-2:]))[0]


def edge_detector(fast):
    """The 4-filter edge detector: conv 4x4 (1 -> 4, no bias, weights set by hand), ReLU, max-pool 2."""
    from .models import layers  # noqa: PLC0415

    Conv2d, MaxPool2d, ReLU = layers(fast)
    base = torch.tensor(EDGE_4X4, dtype=torch.float32)
    net = nn.Sequential(OrderedDict([
        ("conv", Conv2d(1, 4, kernel_size=4, bias=False)),
        ("relu", ReLU()),
        ("pool", MaxPool2d(2, 2)),
    ]))
    with torch.no_grad():
        net.conv.weight.copy_(torch.stack([base, -base, base.t(), -base.t()]).unsqueeze(1))
    return net.eval()


def section_edges(book, fast, image=None):
    """Classic filters with cnnfast's conv2d, and the hand-set 4-filter edge detector."""
    conv2d = _conv2d(fast)
    img = _gray(image if image is not None else cat_image())
    what = "the given image" if image is not None else "scikit-image's cat"
    book.section("edges", f"Classic hand-made filters applied to {what} (grey) with "
                          f"{'cnnfast' if fast else 'torch'}'s conv2d (no padding, so each output is 2 "
                          f"pixels smaller), then a 4-filter edge detector followed by ReLU and max-pooling.")
    book.add("edges", "input", f"input (grey) {img.shape[1]}x{img.shape[2]}", f"{what} in grey.",
             fig_maps(img, f"input {tuple(img.shape)}"), input=img)
    x = img.unsqueeze(0)
    gx = gy = None
    for fname, k, why in CLASSIC_FILTERS:
        kernel = torch.tensor(k, dtype=torch.float32)
        out = conv2d(x, kernel.view(1, 1, 3, 3))[0, 0]
        gx = out if fname == "Sobel x" else gx
        gy = out if fname == "Sobel y" else gy
        book.add("edges", fname, f"{fname} filter", f"{fname}: {why}.",
                 fig_kernel_and_result(kernel, out, f"{fname}: {why}"), kernel=kernel, output=out)
    mag = torch.sqrt(gx * gx + gy * gy)
    book.add("edges", "sobel magnitude", "Sobel gradient magnitude",
             "sqrt(Sobel x^2 + Sobel y^2): the strength of the edge at each pixel, in any direction.",
             fig_maps(mag.unsqueeze(0), f"Sobel magnitude {tuple(mag.shape)}"), output=mag)

    net = edge_detector(fast)
    book.add("edges", "edge detector filters", "edge detector: 4 filters 4x4, set by hand",
             "A vertical-edge filter (dark left, light right), its negative, and their transposes "
             "(horizontal edges). No bias.",
             fig_filters(net.conv.weight, "edge detector: 4 filters 4x4 (no bias)", numbers=True),
             weight=net.conv.weight.detach().clone())
    _, acts = capture(net, x)
    captions = {"conv": "The four filters' responses: positive where the edge matches, negative where it is reversed.",
                "relu": "ReLU keeps only the positive responses: each filter now marks one kind of edge.",
                "pool": "Max-pooling 2x2 halves the size and keeps the strongest response in each 2x2 cell."}
    for path, mod, out in acts:
        t = f"edge detector {describe(path, mod)} output {'x'.join(map(str, out.shape[1:]))}"
        book.add("edges", f"detector {path}", t, captions[path], fig_maps(out[0], t), output=out[0], path=path)
    return net


def cat_walk(fast, seed=0):
    """The modules of the cat walk-through: random 3-filter convs with kernel 3 and 10, ReLU and
    max-pool 5, and a LeNet (its ``features`` are run on the grey photo)."""
    from .models import LeNet, layers  # noqa: PLC0415

    Conv2d, MaxPool2d, ReLU = layers(fast)
    torch.manual_seed(seed)
    walk = nn.Sequential(OrderedDict([
        ("conv_k3", Conv2d(3, 3, kernel_size=3)),
        ("conv_k10", Conv2d(3, 3, kernel_size=10)),
        ("relu", ReLU()),
        ("pool", MaxPool2d(5)),
    ])).eval()
    return walk, LeNet(fast=fast).eval()


def section_cat(book, fast, image=None, seed=0, lenet_state=None):
    """A photo through random convolutions, ReLU and pooling, then LeNet's conv and pool sections."""
    img = image if image is not None else cat_image()
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    what = "the given image" if image is not None else "scikit-image's cat (Chelsea)"
    walk, lenet = cat_walk(fast, seed)
    if lenet_state is not None:
        lenet.load_state_dict(lenet_state)
    book.section("cat", f"{what} through layers with random weights (seed {seed}, "
                        f"{'cnnfast' if fast else 'torch'} layers). A 3-filter convolution gives 3 channels, "
                        f"shown together as one RGB picture: the size shrinks by kernel-1 pixels and a larger "
                        f"kernel blurs away more detail. ReLU keeps the positive part, max-pooling 5x5 shrinks "
                        f"the picture 5 times and keeps the strongest features. Then LeNet's conv and pool "
                        f"sections on the grey photo.")
    x = img.unsqueeze(0)
    book.add("cat", "photo", f"photo {img.shape[1]}x{img.shape[2]}", f"{what}.",
             fig_rgb(img, f"input {tuple(img.shape)}"), input=img)
    with torch.no_grad():
        k3 = walk.conv_k3(x)
        k10 = walk.conv_k10(x)
        r = walk.relu(k3)
        p = walk.pool(r)
    steps = [
        ("conv_k3", k3, "3 random filters 3x3: the shape of the cat survives, colours change, 2 pixels are lost."),
        ("conv_k10", k10, "3 random filters 10x10 on the photo: 9 pixels are lost and the detail is blurred away."),
        ("relu", r, "ReLU of the kernel-3 output: negative responses set to 0."),
        ("pool", p, "Max-pooling 5x5 of the ReLU output: a fifth of the size, the strongest features kept."),
    ]
    for path, out, cap in steps:
        mod = getattr(walk, path)
        t = f"{describe(path, mod)} output {'x'.join(map(str, out.shape[1:]))}"
        book.add("cat", path, t, cap, fig_rgb(out[0], t), output=out[0], path=path)
    grey = _gray(img).unsqueeze(0)
    _, acts = capture(lenet.features, grey)
    for path, mod, out in acts:
        t = f"LeNet features.{describe(path, mod)} output {'x'.join(map(str, out.shape[1:]))}"
        book.add("cat", f"lenet {path}", t, f"LeNet's features.{path} on the grey photo "
                 f"({'trained' if lenet_state is not None else 'random'} weights).",
                 fig_maps(out[0], t), output=out[0], path=f"features.{path}")
    return walk, lenet


def make(out_dir, sections, fast=True, checkpoint=None, image_path=None, seed=0):
    """Draw ``sections`` into ``out_dir``; returns the :class:`Book` (figures and their data)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    image = load_image(image_path) if image_path else None
    book = Book(out_dir)
    lenet_state = None
    for s in sections:
        if s in ("lenet", "mnist-cnn", "resnet-cifar"):
            model, _ = section_model(book, s, fast, checkpoint, image, seed)
            if s == "lenet" and checkpoint is not None:
                lenet_state = model.state_dict()
        elif s == "edges":
            section_edges(book, fast, image)
        elif s == "cat":
            section_cat(book, fast, image, seed, lenet_state)
        else:
            raise ValueError(f"unknown --model {s!r}; choose one of: {', '.join(SECTIONS)}, all")
    book.write_index()
    return book


def run(args):
    sections = args.model
    try:
        if sections is None:
            if args.checkpoint:
                from .train import load_checkpoint  # noqa: PLC0415

                sections = load_checkpoint(args.checkpoint)["model_name"]
            else:
                sections = "all"
        if args.checkpoint and sections not in ("lenet", "mnist-cnn", "resnet-cifar"):
            raise ValueError(f"--checkpoint goes with --model lenet, mnist-cnn or resnet-cifar, not {sections}")
        book = make(args.out, list(SECTIONS) if sections == "all" else [sections], args.fast,
                    args.checkpoint, args.image, args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"cnnfast viz: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(book.figures)} figures and {os.path.join(args.out, 'index.html')}")
    return 0
