"""Every distinct conv2d, conv2d_relu, conv2d_relu_max_pool2d, max_pool2d and ReLU case of the suites' models, cnnfast and
torch side by side (one benchmark group per case and direction)."""
from _common import bench_one


def test_layer(benchmark, layer_case, side, bench_device):
    case, direction = layer_case
    bench_one(benchmark, case, direction, side, bench_device)
