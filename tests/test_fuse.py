"""cnnfast.convert(model, fuse=True): BatchNorm folding (eval), Conv->ReLU and Conv->BN->ReLU fusion
(and ->MaxPool2d after either), Conv(->BN)->add->ReLU as conv2d_add_relu (residual blocks),
found through a torch.fx trace or, for a model that does not trace, its nn.Sequential chains; outputs
(and in training, gradients) against the unfused model, through the project's tolerance rule."""
import copy

import pytest
import torch

import cnnfast
from cnnfast.models import LeNet, MnistCNN, ResNetCifar
from reference import assert_close_to_reference
from test_convert import compare_models, count


def randomize_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters, so that folding has something to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def eval_close(original, fused, x, depth, what):
    with torch.no_grad():
        assert_close_to_reference(fused(x), original(x), copy.deepcopy(original).double()(x.double()), depth, what)


def test_conv_bn_relu_sequential_folds_and_fuses():
    torch.manual_seed(0)
    model = randomize_bn(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                             torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, bias=False),
                                             torch.nn.BatchNorm2d(4))).eval()
    fused = cnnfast.convert(model, fuse=True)
    assert type(fused[0]) is cnnfast.nn.Conv2dReLU and type(fused[1]) is torch.nn.Identity
    assert type(fused[2]) is torch.nn.Identity
    assert type(fused[3]) is cnnfast.nn.Conv2d and fused[3].bias is not None and type(fused[4]) is torch.nn.Identity
    assert type(model[0]) is torch.nn.Conv2d and type(model[1]) is torch.nn.BatchNorm2d  # original untouched
    eval_close(model, fused, torch.randn(2, 3, 12, 12), 2, "conv-bn-relu-conv-bn")


def test_mnist_cnn_and_resnet_cifar_eval_fused_through_fx():
    torch.manual_seed(0)
    for model, n_fused_relu, n_fused_pool, n_bn_left, x in [
            # conv-bn-relu-pool twice, all in one op each
            (MnistCNN(fast=False), 0, 2, 0, torch.randn(4, 1, 28, 28)),
            # the root's input check is one wrapped call in the trace, so the stem's conv1-bn1-relu
            # fuses too: 1 + 9 blocks, no BatchNorm left
            (ResNetCifar(fast=False), 10, 0, 0, torch.randn(2, 3, 32, 32))]:
        model = randomize_bn(model).eval()
        fused = cnnfast.convert(model, fuse=True)
        assert count(fused, cnnfast.nn.Conv2dReLU) == n_fused_relu, type(model).__name__
        assert count(fused, cnnfast.nn.Conv2dReLUMaxPool2d) == n_fused_pool, type(model).__name__
        assert count(fused, torch.nn.BatchNorm2d) == n_bn_left, type(model).__name__
        eval_close(model, fused, x, 20, type(model).__name__)


def test_resnet18_eval_shared_relu_is_kept_and_result_equal():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.resnet18(num_classes=10)).eval()
    fused = cnnfast.convert(model, fuse=True)
    # conv1+bn1+relu+maxpool (stem, one op) and each block's conv1+bn1+relu: 1 + 8 fused. The blocks'
    # relu is shared (used twice in forward); its second use goes into the block's conv2d_add_relu
    # first, so its one use left is absorbed too.
    assert count(fused, cnnfast.nn.Conv2dReLUMaxPool2d) == 1 and type(fused.maxpool) is torch.nn.Identity
    assert fused.conv1.pool_kernel_size == 3 and fused.conv1.pool_stride == 2 and fused.conv1.pool_padding == 1
    assert count(fused, cnnfast.nn.Conv2dReLU) == 8 and count(fused, torch.nn.BatchNorm2d) == 0
    assert count(fused, cnnfast.nn.Conv2dAddReLU) == 8 and type(fused.layer1[0].relu) is torch.nn.Identity
    eval_close(model, fused, torch.randn(1, 3, 64, 64), 20, "resnet18 eval")


def test_training_mode_fuses_conv_relu_pool_and_gradients_match():
    torch.manual_seed(0)
    model = LeNet(fast=False)  # conv -> relu -> pool, twice: one op each
    fused = cnnfast.convert(model, fuse=True)
    assert count(fused, cnnfast.nn.Conv2dReLUMaxPool2d) == 2 and count(fused, torch.nn.MaxPool2d) == 0
    assert [n for n, p in fused.named_parameters()] == [n for n, p in model.named_parameters()]
    compare_models(model, fused, torch.randn(8, 1, 28, 28), depth=5)
    bn_model = MnistCNN(fast=False)  # training: conv -> bn (batch statistics) -> relu stays unfused
    fused_bn = cnnfast.convert(bn_model, fuse=True)
    assert count(fused_bn, cnnfast.nn.Conv2dReLU) == 0 and count(fused_bn, torch.nn.BatchNorm2d) == 2
    compare_models(bn_model, fused_bn, torch.randn(4, 1, 28, 28), depth=3)


def test_functional_relu_and_untraceable_model():
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3)

        def forward(self, x):
            return torch.nn.functional.relu(self.conv(x))

    class Untraceable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU())

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return self.body(x)
            return self.body(-x)

    torch.manual_seed(0)
    for model in (Functional(), Untraceable()):
        fused = cnnfast.convert(model, fuse=True)
        assert count(fused, cnnfast.nn.Conv2dReLU) == 1, type(model).__name__
        x = torch.randn(2, 2, 8, 8)
        eval_close(model, fused, x, 1, type(model).__name__)


def test_conv_output_used_twice_is_not_fused():
    class Branch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = torch.nn.Conv2d(2, 2, 1), torch.nn.ReLU()

        def forward(self, x):
            y = self.conv(x)
            return self.relu(y) + y

    fused = cnnfast.convert(Branch(), fuse=True)
    assert type(fused.conv) is cnnfast.nn.Conv2d and type(fused.relu) is cnnfast.nn.ReLU


def test_inplace_fuse_and_unservable_conv_left_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3).half(), torch.nn.ReLU())
    with pytest.warns(UserWarning, match="float16"):
        converted = cnnfast.convert(model, fuse=True)
    assert type(converted[0]) is torch.nn.Conv2d and type(converted[1]) is torch.nn.ReLU  # a float16 model
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True))
    out = cnnfast.convert(model, inplace=True, fuse=True)
    assert out is model and type(model[0]) is cnnfast.nn.Conv2dReLU and type(model[1]) is torch.nn.Identity


def test_pool_fuses_only_after_a_removable_relu_module():
    class Cases(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = torch.nn.ReLU()
            self.conv_a, self.pool_a = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.MaxPool2d(2)
            self.conv_b, self.pool_b = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.MaxPool2d(2, return_indices=True)
            self.conv_c, self.relu_c = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU()
            self.conv_d, self.relu_d = torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU()
            self.pool_d = torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)

        def forward(self, x):
            a = self.pool_a(self.shared(self.conv_a(x)))  # shared ReLU: stays, so no pool fusion
            b, _ = self.pool_b(self.shared(self.conv_b(a)))  # the pool's indices are used: not fused
            c = self.relu_c(self.conv_c(b))
            c = torch.nn.functional.max_pool2d(c, 2) + 1  # a functional pool is kept as it is
            return self.pool_d(self.relu_d(self.conv_d(c)))  # conv -> relu -> pool: one op

    torch.manual_seed(0)
    model = Cases()
    fused = cnnfast.convert(model, fuse=True)
    assert type(fused.conv_a) is cnnfast.nn.Conv2dReLU and type(fused.pool_a) is cnnfast.nn.MaxPool2d
    assert type(fused.conv_b) is cnnfast.nn.Conv2dReLU and type(fused.pool_b) is cnnfast.nn.MaxPool2d
    assert type(fused.conv_c) is cnnfast.nn.Conv2dReLU
    assert type(fused.conv_d) is cnnfast.nn.Conv2dReLUMaxPool2d and type(fused.pool_d) is torch.nn.Identity
    assert fused.conv_d.ceil_mode and fused.conv_d.pool_padding == 1
    compare_models(model, fused, torch.randn(3, 2, 16, 16), depth=4)


def test_sequential_conv_bn_relu_pool_eval_folds_into_one_op():
    torch.manual_seed(0)
    model = randomize_bn(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                             torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 4, 3))).eval()
    fused = cnnfast.convert(model, fuse=True)
    assert type(fused[0]) is cnnfast.nn.Conv2dReLUMaxPool2d
    assert all(type(fused[i]) is torch.nn.Identity for i in (1, 2, 3))
    eval_close(model, fused, torch.randn(2, 3, 12, 12), 2, "conv-bn-relu-pool-conv")


# ---- residual blocks: conv (+ BN) -> add -> ReLU as conv2d_add_relu ------------------------------

class _OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops a forward runs, by name (cnnfast's and aten's)."""

    def __init__(self):
        super().__init__()
        self.calls = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def op_calls(model, x):
    with torch.no_grad(), _OpCounter() as counter:
        model(x)
    return counter.calls


@pytest.mark.parametrize("name,blocks,relus_left,x", [
    ("resnet18", 8, 0, torch.randn(2, 3, 64, 64)),    # BasicBlock: 3 with a downsample branch (1x1 conv + BN)
    # Bottleneck calls its one ReLU module three times: after the residual fusion it is still used
    # twice, so it stays a module, as a shared ReLU does, and runs again (idempotent) after each
    # Conv2dReLU.
    ("resnet50", 16, 32, torch.randn(2, 3, 64, 64)),
])
def test_torchvision_resnet_blocks_fuse_into_conv2d_add_relu(name, blocks, relus_left, x):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = randomize_bn(getattr(torchvision.models, name)(num_classes=10)).eval()
    fused = cnnfast.convert(model, fuse=True)
    assert count(fused, cnnfast.nn.Conv2dAddReLU) == blocks and count(fused, torch.nn.BatchNorm2d) == 0
    assert type(fused).__name__ == "ResNet" and type(fused.layer1[0]).__name__ == type(model.layer1[0]).__name__
    calls = op_calls(fused, x)
    # Every residual addition went into a fused op: none is left for torch to run.
    assert calls.get("conv2d_add_relu") == blocks, calls
    assert "add" not in calls and "add_" not in calls, calls
    assert calls.get("relu", 0) + calls.get("relu_", 0) == relus_left, calls
    # The convolutions keep their state_dict keys (the folded BatchNorms' are gone, their biases added).
    conv_keys = {f"{path}.weight" for path, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert conv_keys <= set(fused.state_dict())
    depth = 18 if name == "resnet18" else 50
    eval_close(model, fused, x, depth, f"{name} eval")


def test_resnet_cifar_blocks_fuse_and_compile_fullgraph():
    torch.manual_seed(0)
    model = randomize_bn(ResNetCifar()).eval()  # cnnfast's own layers (fast=True)
    fused = cnnfast.convert(model, fuse=True)
    assert count(fused, cnnfast.nn.Conv2dAddReLU) == 9 and count(fused, cnnfast.nn.Conv2dReLU) == 10
    x = torch.randn(2, 3, 32, 32)
    assert op_calls(fused, x).get("conv2d_add_relu") == 9
    eval_close(model, fused, x, 20, "ResNetCifar eval")
    torch._dynamo.reset()
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), fused(x), rtol=0, atol=0)
    explanation = torch._dynamo.explain(fused)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


class _Residual(torch.nn.Module):
    """conv (+ BN) -> add (of variant `how`) -> ReLU, with a 1x1 conv as the residual branch."""

    def __init__(self, how="add", bn=True, act=None):
        super().__init__()
        self.how = how
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4) if bn else torch.nn.Identity()
        if how in ("add", "iadd", "add_method", "functional", "into_residual"):
            self.short = torch.nn.Conv2d(4, 4, 1)  # the residual branch; the identity otherwise
        self.act = act if act is not None else torch.nn.ReLU(inplace=True)
        if how == "broadcast":
            self.scale = torch.nn.Parameter(torch.randn(4, 1, 1))

    def forward(self, x):
        y, r = self.bn(self.conv(x)), self.short(x) if hasattr(self, "short") else x
        if self.how == "add":
            return self.act(y + r)
        if self.how == "identity":  # the identity shortcut: the main branch's conv is the only candidate
            return self.act(y + r)
        if self.how == "iadd":
            y += r
            return self.act(y)
        if self.how == "add_method":
            return torch.relu(r.add(y))
        if self.how == "functional":
            return torch.nn.functional.relu(torch.add(y, r))
        if self.how == "broadcast":  # a per-channel parameter: fused module, torch's add after the conv
            return self.act(y + self.scale)
        # Not the pattern: the sum used again, the conv output used again, alpha (with the identity as
        # the residual, so that no shortcut conv makes the pattern from the other side), an in-place add
        # into a residual that is used again.
        if self.how == "sum_reused":
            s = y + r
            return self.act(s) + s
        if self.how == "conv_reused":
            return self.act(y + r) * y
        if self.how == "alpha":
            return self.act(torch.add(y, r, alpha=2.0))
        if self.how == "into_residual":
            r.add_(y)
            return self.act(r), x * r
        raise ValueError(self.how)


def _check_residual_model(model, fused_expected, train=False):
    torch.manual_seed(1)
    model = randomize_bn(model)
    model.train(train)
    fused = cnnfast.convert(model, fuse=True)
    assert count(fused, cnnfast.nn.Conv2dAddReLU) == fused_expected, model.how
    x = torch.randn(2, 4, 7, 7)
    if train:
        compare_models(model, fused, x, depth=2)
    else:
        with torch.no_grad():
            ours, theirs = fused(x), model(x)
            reference = copy.deepcopy(model).double()(x.double())
        if isinstance(ours, tuple):
            for a, t, r in zip(ours, theirs, reference):
                assert_close_to_reference(a, t, r, 40, model.how)
        else:
            assert_close_to_reference(ours, theirs, reference, 40, model.how)
    return fused


@pytest.mark.parametrize("how", ["add", "identity", "iadd", "add_method", "functional", "broadcast"])
def test_residual_pattern_variants_fuse(how):
    fused = _check_residual_model(_Residual(how).eval(), 1)
    assert type(fused.bn) is torch.nn.Identity


@pytest.mark.parametrize("how", ["sum_reused", "conv_reused", "alpha", "into_residual"])
def test_residual_pattern_not_exact_is_left_alone(how):
    _check_residual_model(_Residual(how).eval(), 0)


def test_residual_other_activations_and_training_bn_are_left_alone():
    for act in (torch.nn.ReLU6(), torch.nn.LeakyReLU()):
        _check_residual_model(_Residual("add", act=act).eval(), 0)
    # Training mode: the BatchNorm (batch statistics) cannot fold, so there is no conv -> add to fuse on
    # the main branch; with a conv shortcut, that conv (no BatchNorm) is fused with the BatchNorm's
    # output as its residual, which is exact.
    _check_residual_model(_Residual("identity"), 0, train=True)
    fused = _check_residual_model(_Residual("add"), 1, train=True)
    assert type(fused.short) is cnnfast.nn.Conv2dAddReLU and type(fused.bn) is torch.nn.BatchNorm2d


def test_residual_without_bn_fuses_in_training_and_gradients_match():
    _check_residual_model(_Residual("add", bn=False), 1, train=True)

