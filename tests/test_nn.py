"""cnnfast.nn layers: torch.nn subclasses with torch's constructor, parameters and state_dict."""
import pytest
import torch

import cnnfast


def test_layers_are_torch_subclasses_with_the_same_state():
    for ours, theirs, args in [
        (cnnfast.nn.Conv2d, torch.nn.Conv2d, dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1)),
        (cnnfast.nn.MaxPool2d, torch.nn.MaxPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (cnnfast.nn.ReLU, torch.nn.ReLU, dict(inplace=True)),
    ]:
        a, b = ours(**args), theirs(**args)
        assert isinstance(a, theirs)
        assert list(a.state_dict()) == list(b.state_dict())
        assert repr(a) == repr(b)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_layer_matches_torch_and_checkpoints_cross_load(padding_mode, tmp_path):
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), groups=2, padding_mode=padding_mode)
    ours = cnnfast.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), groups=2, padding_mode=padding_mode)
    torch.save(theirs.state_dict(), tmp_path / "torch.pt")
    ours.load_state_dict(torch.load(tmp_path / "torch.pt"))
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(ours(x), theirs(x))  # float32 defaults: reduction of 2*3*2 = 12 terms
    torch.save(ours.state_dict(), tmp_path / "cnnfast.pt")
    back = torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), groups=2, padding_mode=padding_mode)
    back.load_state_dict(torch.load(tmp_path / "cnnfast.pt"))
    for k, v in back.state_dict().items():
        assert torch.equal(v, theirs.state_dict()[k])


def test_pool_and_relu_layers_match_torch():
    x = torch.randn(2, 3, 11, 10)
    assert torch.equal(cnnfast.nn.MaxPool2d(3, 2, 1, ceil_mode=True)(x), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)(x))
    o, i = cnnfast.nn.MaxPool2d(2, return_indices=True)(x)
    to, ti = torch.nn.MaxPool2d(2, return_indices=True)(x)
    assert torch.equal(o, to) and torch.equal(i, ti)
    y = x.clone()
    assert cnnfast.nn.ReLU(inplace=True)(y) is y and torch.equal(y, torch.relu(x))


def test_conv2d_relu_layer_is_a_conv2d_with_relu():
    torch.manual_seed(0)
    fused = cnnfast.nn.Conv2dReLU(3, 5, 3, padding=1)
    plain = torch.nn.Conv2d(3, 5, 3, padding=1)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fused(x), torch.relu(plain(x)))
