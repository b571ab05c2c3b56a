"""The classic tutorial models, built from cnnfast's layers (``fast=True``, the default) or from plain
``torch.nn`` layers (``fast=False``), with the same parameter and buffer names either way, so a
checkpoint of one loads into the other.

- :class:`LeNet`: LeNet-5 for 1x28x28 digits.
- :class:`MnistCNN`: two conv/BatchNorm/ReLU/max-pool blocks and a linear layer, for 1x28x28 digits.
- :class:`ResNetCifar`: the CIFAR-10 residual network for 3x32x32 images (``blocks_per_stage=3`` is
  ResNet-20, 5 is ResNet-32, 9 is ResNet-56).

Every convolution, max-pooling and ReLU is its own module instance (never a functional call and
never shared between two places), so forward hooks see each layer's output.
"""
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["LeNet", "MnistCNN", "ResNetCifar", "get_model", "MODELS", "layers"]


def layers(fast):
    """``(Conv2d, MaxPool2d, ReLU)`` classes: cnnfast's (imported only now, as they need the compiled
    extension) when ``fast`` is true, torch's otherwise."""
    if fast:
        from .. import nn as cnn  # noqa: PLC0415  (needs cnnfast._C; fast=False must work without it)

        return cnn.Conv2d, cnn.MaxPool2d, cnn.ReLU
    return nn.Conv2d, nn.MaxPool2d, nn.ReLU


def _check_input(x, expected, model_name):
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(
            f"{model_name} expects input of shape (N, {', '.join(map(str, expected))}), "
            f"but got input of shape {tuple(x.shape)}"
        )


# A torch.fx trace records the check as one call instead of tracing into its branch, so the models
# trace whole (cnnfast.convert(fuse=True) reads their structure from the trace).
torch.fx.wrap("_check_input")


class LeNet(nn.Module):
    """LeNet-5 for 1x28x28 input: conv 5x5 (1->6, padding 2) -> ReLU -> max-pool 2 -> conv 5x5 (6->16)
    -> ReLU -> max-pool 2 -> fully connected 400 -> 120 -> 84 -> ``num_classes``.

    Modules: ``features.{conv1,relu1,pool1,conv2,relu2,pool2}`` and
    ``classifier.{fc1,relu3,fc2,relu4,fc3}``.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10, fast=True):
        super().__init__()
        Conv2d, MaxPool2d, ReLU = layers(fast)
        self.fast = bool(fast)
        self.features = nn.Sequential(OrderedDict([
            ("conv1", Conv2d(1, 6, kernel_size=5, padding=2)),   # 6 x 28 x 28
            ("relu1", ReLU()),
            ("pool1", MaxPool2d(2)),                             # 6 x 14 x 14
            ("conv2", Conv2d(6, 16, kernel_size=5)),             # 16 x 10 x 10
            ("relu2", ReLU()),
            ("pool2", MaxPool2d(2)),                             # 16 x 5 x 5
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(16 * 5 * 5, 120)),
            ("relu3", ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x):
        _check_input(x, tuple(self.input_shape), type(self).__name__)
        return self.classifier(torch.flatten(self.features(x), 1))


def _conv_block(Conv2d, MaxPool2d, ReLU, cin, cout):
    return nn.Sequential(OrderedDict([
        ("conv", Conv2d(cin, cout, kernel_size=5, padding=2)),
        ("bn", nn.BatchNorm2d(cout)),
        ("relu", ReLU()),
        ("pool", MaxPool2d(2)),
    ]))


class MnistCNN(nn.Module):
    """The small BatchNorm CNN of the MNIST tutorials, for 1x28x28 input: two blocks of conv 5x5
    (padding 2) -> BatchNorm -> ReLU -> max-pool 2 with 16 and 32 channels (28 -> 14 -> 7), then a
    linear layer from 7*7*32 to ``num_classes``.

    Modules: ``layer1.{conv,bn,relu,pool}``, ``layer2.{conv,bn,relu,pool}``, ``fc``.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10, fast=True):
        super().__init__()
        Conv2d, MaxPool2d, ReLU = layers(fast)
        self.fast = bool(fast)
        self.layer1 = _conv_block(Conv2d, MaxPool2d, ReLU, 1, 16)
        self.layer2 = _conv_block(Conv2d, MaxPool2d, ReLU, 16, 32)
        self.fc = nn.Linear(7 * 7 * 32, num_classes)

    def forward(self, x):
        _check_input(x, tuple(self.input_shape), type(self).__name__)
        return self.fc(torch.flatten(self.layer2(self.layer1(x)), 1))


class BasicBlock(nn.Module):
    """Residual block: conv 3x3 (stride s) -> BN -> ReLU -> conv 3x3 -> BN, plus the shortcut
    (identity, or a strided 1x1 conv and BN when the shape changes), then ReLU.

    Modules: ``conv1, bn1, relu1, conv2, bn2, shortcut, relu2``.
    """

    def __init__(self, cin, cout, stride, Conv2d, ReLU):
        super().__init__()
        self.conv1 = Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(OrderedDict([
                ("conv", Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)),
                ("bn", nn.BatchNorm2d(cout)),
            ]))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """The CIFAR-10 residual network (He et al. 2016, section 4.2) for 3x32x32 input: conv 3x3 to 16
    channels -> BN -> ReLU, three stages of ``blocks_per_stage`` basic blocks at 16, 32 and 64 channels
    (32x32, 16x16, 8x8; the first block of stages 2 and 3 has stride 2 and a strided 1x1-conv
    shortcut), 8x8 average pooling, linear to ``num_classes``. Depth is ``6 * blocks_per_stage + 2``
    (3: ResNet-20).

    Modules: ``conv1, bn1, relu, layer1..layer3`` (each ``0..blocks_per_stage-1``), ``avgpool, fc``.
    """

    input_shape = (3, 32, 32)

    def __init__(self, blocks_per_stage=3, num_classes=10, fast=True):
        super().__init__()
        if isinstance(blocks_per_stage, bool) or not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be a positive int, but got blocks_per_stage={blocks_per_stage!r}")
        Conv2d, _, ReLU = layers(fast)
        self.fast = bool(fast)
        self.blocks_per_stage = blocks_per_stage
        self.conv1 = Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = ReLU()
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if (i > 0 and b == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride, Conv2d, ReLU))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        _check_input(x, tuple(self.input_shape), type(self).__name__)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# CLI name -> class. ``get_model`` is how the command line and checkpoints build models.
MODELS = {"lenet": LeNet, "mnist-cnn": MnistCNN, "resnet-cifar": ResNetCifar}


def get_model(name, fast=True, **kw):
    """The model called ``name`` (``lenet``, ``mnist-cnn`` or ``resnet-cifar``), built with
    ``fast`` and the class's keyword arguments ``kw`` (e.g. ``num_classes``, ``blocks_per_stage``)."""
    try:
        cls = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    return cls(fast=fast, **kw)
