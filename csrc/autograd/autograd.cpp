// Autograd of the differentiable cnnfast ops, one torch::autograd::Function per op (csrc/autograd/<op>.h),
// registered here for every device at the Autograd key. One translation unit includes them all: the
// autograd headers take most of a minute to compile, once. Each forward calls the op again with the
// autograd keys excluded (so the CPU, CUDA, Meta/fake or autocast kernel runs), saves what its backward
// op needs and the backward calls that op (cnnfast::<op>_backward, schemas in csrc/ops.cpp). Being C++, a call costs a few microseconds of
// dispatch instead of the tens that a Python autograd registration takes per forward and backward.
// Backward ops have no autograd of their own: second derivatives are not supported (README). A gradient
// computed with create_graph=True is handed out through torch's DelayedError node (once_differentiable
// below), so that differentiating it again raises instead of silently giving zero.
#include <torch/library.h>

#include "autograd/conv2d.h"
#include "autograd/conv2d_add_relu.h"
#include "autograd/conv2d_relu_max_pool2d.h"
#include "autograd/max_pool2d.h"
#include "autograd/relu.h"

namespace cnnfast::autograd {

TORCH_LIBRARY_IMPL(cnnfast, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d_relu", &conv2d_relu_autograd);
  m.impl("conv2d_add_relu", &conv2d_add_relu_autograd);
  m.impl("conv2d_relu_max_pool2d", &conv2d_relu_max_pool2d_autograd);
  m.impl("max_pool2d", &max_pool2d_autograd);
  m.impl("relu", &relu_autograd);
}

}  // namespace cnnfast::autograd
