"""Python side of the ``torch.ops.cnnfast`` ops: fake kernels (for torch.compile and FakeTensor), one
module per op. The schemas are in csrc/ops.cpp, autograd in csrc/autograd/<op>.h, the glue in
csrc/cpu/<op>_ops.cpp and csrc/cuda/<op>_ops.cpp."""
from . import conv2d, conv2d_add_relu, conv2d_relu, conv2d_relu_max_pool2d, max_pool2d, relu  # noqa: F401
from ._common import supported_dtypes  # noqa: F401
