"""cnnfast.convert on LeNet and torchvision's resnet18: same outputs and gradients as before."""
import copy

import pytest
import torch

import cnnfast
from reference import assert_close_to_reference


class LeNet(torch.nn.Module):
    """The classic LeNet-5 for 1x28x28 digits, written in plain torch (independent of cnnfast.models)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2),
        )
        self.classifier = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84),
            torch.nn.ReLU(), torch.nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def count(model, cls):
    return sum(type(m) is cls for m in model.modules())


def compare_models(original, converted, x, depth):
    """Outputs and parameter gradients of the converted model against the original, each measured
    against a float64 copy of the original. `depth` (the number of convolutions on the longest path)
    scales the yardstick's floor: rounding errors of successive layers add up."""
    reference = copy.deepcopy(original).double()
    outs = {}
    for name, model, inp in [("original", original, x), ("converted", converted, x), ("reference", reference, x.double())]:
        model.zero_grad()
        y = model(inp)
        y.square().sum().backward()
        outs[name] = (y.detach(), {k: p.grad for k, p in model.named_parameters()})
    (yo, go), (yc, gc), (yr, gr) = outs["original"], outs["converted"], outs["reference"]
    assert_close_to_reference(yc, yo, yr, depth, "output")
    assert go.keys() == gc.keys()
    for k in go:
        assert_close_to_reference(gc[k], go[k], gr[k], depth, f"grad of {k}")


def test_convert_lenet_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = LeNet()
    converted = cnnfast.convert(model)
    assert count(converted, cnnfast.nn.Conv2d) == 2 and count(converted, cnnfast.nn.ReLU) == 4
    assert count(converted, cnnfast.nn.MaxPool2d) == 2 and count(model, torch.nn.Conv2d) == 2  # original untouched
    compare_models(model, converted, torch.randn(8, 1, 28, 28), depth=5)


def test_convert_resnet18_same_outputs_and_gradients():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    converted = cnnfast.convert(model)
    assert count(converted, cnnfast.nn.Conv2d) == 20 and count(converted, torch.nn.Conv2d) == 0
    # Training mode: BatchNorm uses batch statistics, which needs a batch of more than one.
    compare_models(model, converted, torch.randn(2, 3, 64, 64), depth=20)
    model.eval(), converted.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert_close_to_reference(converted(x), model(x), copy.deepcopy(model).double()(x.double()), 20, "eval 224")


def test_convert_inplace_shares_parameters_and_keeps_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).double().eval()
    weight = model[0].weight
    hook_calls = []
    model[0].register_forward_hook(lambda *a: hook_calls.append(1))
    out = cnnfast.convert(model, inplace=True)
    assert out is model and type(model[0]) is cnnfast.nn.Conv2d and model[0].weight is weight
    assert not model.training and model[0].weight.dtype == torch.float64
    assert model[1].running_var is not None
    model(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    assert hook_calls == [1]


def test_convert_copy_leaves_original_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    converted = cnnfast.convert(model)
    assert type(model[0]) is torch.nn.Conv2d and type(converted[0]) is cnnfast.nn.Conv2d
    assert converted[0].weight is not model[0].weight and torch.equal(converted[0].weight, model[0].weight)


def test_convert_shared_module_stays_shared_and_root_is_converted():
    relu = torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), relu, torch.nn.Conv2d(3, 3, 1), relu)
    converted = cnnfast.convert(model)
    assert converted[1] is converted[3] and type(converted[1]) is cnnfast.nn.ReLU
    assert type(cnnfast.convert(torch.nn.Conv2d(1, 1, 1))) is cnnfast.nn.Conv2d


def test_convert_names_what_it_cannot_serve_in_one_warning():
    class MyConv(torch.nn.Conv2d):  # a user's subclass: its forward may differ, left alone silently
        pass

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3).half(), torch.nn.ReLU(), MyConv(4, 4, 1),
                                torch.nn.LazyConv2d(4, 3))
    with pytest.warns(UserWarning) as record:
        converted = cnnfast.convert(model)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "0 (Conv2d): dtype torch.float16 has no cnnfast kernel on cpu" in msg
    assert "3 (LazyConv2d)" not in msg  # a LazyConv2d is not a torch.nn.Conv2d until initialized
    assert type(converted[0]) is torch.nn.Conv2d and type(converted[2]) is MyConv


def test_convert_rejects_a_non_module():
    with pytest.raises(TypeError, match="torch.nn.Module, but got model of type int"):
        cnnfast.convert(3)


@pytest.mark.parametrize("fuse", [False, True])  # fused: Conv->ReLU->MaxPool as conv2d_relu_max_pool2d
def test_compile_fullgraph_on_converted_model(fuse):
    torch.manual_seed(0)
    model = cnnfast.convert(LeNet(), fuse=fuse)
    assert count(model, cnnfast.nn.Conv2dReLUMaxPool2d) == (2 if fuse else 0)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    torch.testing.assert_close(compiled(x), expected)
    compiled(x).sum().backward()  # the backward ops trace too
    assert all(p.grad is not None for p in model.parameters())


def test_compile_inductor_graph_has_no_break():
    torch._dynamo.reset()
    model = cnnfast.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2)))
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 10, 10))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
