"""cnnfast.convert(model, fuse=True): BatchNorm folding (eval), Conv->ReLU and Conv->BN->ReLU fusion
(and ->MaxPool2d after either),
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
    # conv1+bn1+relu+maxpool (stem, one op) and each block's conv1+bn1+relu: 1 + 8 fused; the blocks'
    # relu is shared (used twice in forward) so it stays a module.
    assert count(fused, cnnfast.nn.Conv2dReLUMaxPool2d) == 1 and type(fused.maxpool) is torch.nn.Identity
    assert fused.conv1.pool_kernel_size == 3 and fused.conv1.pool_stride == 2 and fused.conv1.pool_padding == 1
    assert count(fused, cnnfast.nn.Conv2dReLU) == 8 and count(fused, torch.nn.BatchNorm2d) == 0
    assert type(fused.layer1[0].relu) is cnnfast.nn.ReLU
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
