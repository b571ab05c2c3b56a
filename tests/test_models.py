"""cnnfast.models: architecture against hand arithmetic and torch.nn.functional, and the fast
(cnnfast layers) and plain (torch layers) variants against each other."""
import pytest
import torch
import torch.nn.functional as F

from cnnfast.models import MODELS, LeNet, MnistCNN, ResNetCifar, get_model


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores a second spinning thread only slows these small
    models down, and results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _input(model, n=3, seed=0):
    return torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(seed))


def test_lenet_is_lenet5_by_hand():
    """LeNet's forward equals LeNet-5 written out with torch.nn.functional on the same weights."""
    torch.manual_seed(0)
    m = LeNet(fast=False).eval()
    x = _input(m)
    p = dict(m.named_parameters())
    h = F.max_pool2d(F.relu(F.conv2d(x, p["features.conv1.weight"], p["features.conv1.bias"], padding=2)), 2)
    assert h.shape == (3, 6, 14, 14)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["features.conv2.weight"], p["features.conv2.bias"])), 2)
    assert h.shape == (3, 16, 5, 5)
    h = F.relu(F.linear(h.flatten(1), p["classifier.fc1.weight"], p["classifier.fc1.bias"]))
    h = F.relu(F.linear(h, p["classifier.fc2.weight"], p["classifier.fc2.bias"]))
    h = F.linear(h, p["classifier.fc3.weight"], p["classifier.fc3.bias"])
    # Same ops in the same order on the same tensors: bit-identical.
    assert torch.equal(m(x), h)
    # LeNet-5 parameter count by hand: 6*(25+1) + 16*(6*25+1) + 120*(400+1) + 84*(120+1) + 10*(84+1).
    assert sum(t.numel() for t in m.parameters()) == 156 + 2416 + 48120 + 10164 + 850


def test_mnist_cnn_by_hand():
    torch.manual_seed(0)
    m = MnistCNN(fast=False).eval()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BN is really checked
        for bn in (m.layer1.bn, m.layer2.bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = _input(m)
    p, b = dict(m.named_parameters()), dict(m.named_buffers())

    def block(h, name):
        h = F.conv2d(h, p[f"{name}.conv.weight"], p[f"{name}.conv.bias"], padding=2)
        h = F.batch_norm(h, b[f"{name}.bn.running_mean"], b[f"{name}.bn.running_var"],
                         p[f"{name}.bn.weight"], p[f"{name}.bn.bias"], training=False, eps=1e-5)
        return F.max_pool2d(F.relu(h), 2)

    h = block(block(x, "layer1"), "layer2")
    assert h.shape == (3, 32, 7, 7)
    assert torch.equal(m(x), F.linear(h.flatten(1), p["fc.weight"], p["fc.bias"]))


@pytest.mark.parametrize("n", [1, 3])
def test_resnet_cifar_structure(n):
    m = ResNetCifar(blocks_per_stage=n, fast=False)
    convs = [name for name, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)]
    # 6n+1 convs on the main path (the "6n+2 layers" count includes the fc) plus 2 shortcut convs.
    assert len(convs) == 6 * n + 1 + 2
    assert [name for name in convs if "shortcut" in name] == ["layer2.0.shortcut.conv", "layer3.0.shortcut.conv"]
    shapes = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
             for k, mod in m.named_children() if k.startswith("layer") or k == "avgpool"]
    out = m(_input(m, n=2))
    for h in hooks:
        h.remove()
    assert shapes == {"layer1": (2, 16, 32, 32), "layer2": (2, 32, 16, 16), "layer3": (2, 64, 8, 8), "avgpool": (2, 64, 1, 1)}
    assert out.shape == (2, 10)


def test_resnet_block_is_residual():
    """A block's output is relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), written out here."""
    torch.manual_seed(0)
    blk = ResNetCifar(blocks_per_stage=1, fast=False).layer2[0].eval()
    x = torch.randn(2, 16, 32, 32)
    h = blk.bn2(F.conv2d(F.relu(blk.bn1(F.conv2d(x, blk.conv1.weight, stride=2, padding=1))), blk.conv2.weight, padding=1))
    s = blk.shortcut.bn(F.conv2d(x, blk.shortcut.conv.weight, stride=2))
    torch.testing.assert_close(blk(x), F.relu(h + s), rtol=0, atol=0)


def test_get_model_and_errors():
    assert isinstance(get_model("lenet", fast=False), LeNet)
    assert isinstance(get_model("mnist-cnn", fast=False, num_classes=5), MnistCNN)
    assert get_model("resnet-cifar", fast=False, blocks_per_stage=2).blocks_per_stage == 2
    with pytest.raises(ValueError, match=r"unknown model 'vgg'.*lenet, mnist-cnn, resnet-cifar"):
        get_model("vgg")
    with pytest.raises(ValueError, match=r"LeNet expects input of shape \(N, 1, 28, 28\).*\(2, 1, 32, 32\)"):
        LeNet(fast=False)(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="blocks_per_stage=0"):
        ResNetCifar(blocks_per_stage=0, fast=False)


def test_layers_are_module_instances_not_shared():
    for name in MODELS:
        m = get_model(name, fast=False)
        mods = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU))]
        assert len(mods) == len({id(mod) for mod in mods})


# --- fast=True: cnnfast's layers -------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_fast_model_matches_torch_model(name):
    import cnnfast.nn as cnn

    torch.manual_seed(0)
    ref = get_model(name, fast=False)
    fast = get_model(name, fast=True)
    assert list(ref.state_dict()) == list(fast.state_dict())
    kinds = {torch.nn.Conv2d: cnn.Conv2d, torch.nn.MaxPool2d: cnn.MaxPool2d, torch.nn.ReLU: cnn.ReLU}
    for (n1, m1), (n2, m2) in zip(ref.named_modules(), fast.named_modules()):
        assert n1 == n2
        if type(m1) in kinds:
            assert type(m2) is kinds[type(m1)], n2
    fast.load_state_dict(ref.state_dict())
    for mode in ("train", "eval"):
        fast.load_state_dict(ref.state_dict())  # same BatchNorm running statistics in both
        getattr(ref, mode)(), getattr(fast, mode)()
        x = _input(ref, n=4)
        # float32 forward: a different summation order in each conv (K = C*kh*kw <= 576 terms) gives
        # a few ulps of the partial sums, compounded over at most 21 layers; 1e-4 relative / 1e-5
        # absolute is ~1000 ulps of outputs of magnitude ~1.
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-4, atol=1e-5)
    # Gradients in float64. In float32 a rounding-size difference can move a ReLU input across 0 or
    # flip a max-pool argmax, which changes the (sub)gradient by O(1) at that element, and
    # train-mode BatchNorm's backward spreads it over the whole channel: a legitimate difference no
    # tolerance describes. In float64 (eps 2.2e-16) such a flip needs a value within ~1e-13 of a
    # kink, which these random inputs do not have. Tolerance: sums of <= 4*32*32 = 4096 terms per
    # weight gradient through <= 21 layers, each adding relative error ~K*eps <= 1e-12, and
    # BatchNorm's backward (a difference of two terms of similar size) amplifying it ~100x: 1e-8
    # relative, 1e-10 absolute.
    ref.double(), fast.double()
    for mode in ("train", "eval"):
        fast.load_state_dict(ref.state_dict())  # same BatchNorm running statistics in both
        getattr(ref, mode)(), getattr(fast, mode)()
        x = _input(ref, n=4).double()
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ref(x1), fast(x2)
        torch.testing.assert_close(y2, y1, rtol=1e-10, atol=1e-12)
        y1.square().sum().backward()
        y2.square().sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-8, atol=1e-10)
        for (n, p1), p2 in zip(ref.named_parameters(), fast.parameters()):
            torch.testing.assert_close(p2.grad, p1.grad, rtol=1e-8, atol=1e-10, msg=lambda m, n=n: f"{n}: {m}")
            p1.grad = p2.grad = None
