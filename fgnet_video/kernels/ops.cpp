// CUDA kernels of the operators TORCH_EXTENSION_NAME::bias_act and ::upfirdn2d, registered
// with PyTorch's dispatcher: argument checks, output allocation, device guard and stream,
// then the CUDA launchers declared in ops.h. library.py defines the operators (schemas, fake
// implementations, autograd); TORCH_EXTENSION_NAME, set by torch's build, is the build's
// name and the operators' namespace (build.py). Only ATen/c10 and torch/library.h: no
// torch/extension.h, pybind11 or Python headers, so this file compiles quickly.
#include <cstdint>
#include <cstdlib>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops.h"

namespace {

fgnet::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return fgnet::DType::kFloat32;
    case at::kHalf:
      return fgnet::DType::kFloat16;
    case at::kBFloat16:
      return fgnet::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "fgnet_video kernels support float32, float16 and bfloat16, not ",
                  t.scalar_type());
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

void check_launch(cudaError_t status) {
  TORCH_CHECK(status == cudaSuccess, "fgnet_video kernel launch failed: ",
              cudaGetErrorString(status));
}

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.device() == x.device(), name, " must be on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), name, " must have dtype ", x.scalar_type());
}

// forward: lrelu(x + bias, slope) * gain; gradient (grad=true): x * gain * (ref > 0 ? 1 : slope)
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                    const std::optional<at::Tensor>& ref, bool grad, double slope, double gain) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.dim() >= 2, "x must have a channel dimension (dim 1)");
  TORCH_CHECK(!grad || ref.has_value(), "gradient mode needs the saved output `ref`");
  TORCH_CHECK(!(grad && bias.has_value()), "gradient mode takes no bias");
  const c10::cuda::CUDAGuard guard(x.device());
  const fgnet::DType dtype = dtype_of(x);
  const at::Tensor input = x.contiguous();
  at::Tensor bias_c, ref_c;
  if (bias.has_value()) {
    check_like(*bias, x, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), "bias must have shape (",
                x.size(1), ",)");
    bias_c = bias->contiguous();
  }
  if (grad) {
    check_like(*ref, x, "ref");
    TORCH_CHECK(ref->sizes() == x.sizes(), "ref must have the shape of x");
    ref_c = ref->contiguous();
  }
  at::Tensor y = at::empty(input.sizes(), input.options());
  if (y.numel() == 0) return y;

  fgnet::BiasActParams p{};
  p.x = input.data_ptr();
  p.bias = bias_c.defined() ? bias_c.data_ptr() : nullptr;
  p.ref = ref_c.defined() ? ref_c.data_ptr() : nullptr;
  p.y = y.data_ptr();
  p.numel = input.numel();
  p.channels = input.size(1);
  p.inner = p.numel / (input.size(0) * p.channels);
  p.slope = static_cast<float>(slope);
  p.gain = static_cast<float>(gain);
  p.grad = grad;
  const bool vectorizable = aligned16(p.x) && aligned16(p.y) && (!p.ref || aligned16(p.ref));
  check_launch(fgnet::launch_bias_act(p, dtype, vectorizable,
                                      c10::cuda::getCurrentCUDAStream().stream()));
  return y;
}

// upfirdn2d of x (N, C, H, W) with a 2-D kernel: see Upfirdn2dParams in ops.h.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& kernel, int64_t up,
                     int64_t down, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                     int64_t pad_y1) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4, "x must have shape (N, C, H, W)");
  TORCH_CHECK(kernel.dim() == 2 && kernel.numel() > 0, "kernel must be a non-empty 2-D tensor");
  TORCH_CHECK(up >= 1 && down >= 1, "up and down must be >= 1");
  const c10::cuda::CUDAGuard guard(x.device());
  const fgnet::DType dtype = dtype_of(x);
  const int64_t in_h = x.size(2), in_w = x.size(3);
  const int64_t kh = kernel.size(0), kw = kernel.size(1);
  const int64_t span_h = in_h * up + pad_y0 + pad_y1 - kh;
  const int64_t span_w = in_w * up + pad_x0 + pad_x1 - kw;
  TORCH_CHECK(span_h >= 0 && span_w >= 0, "padded input is smaller than the kernel");
  const int64_t out_h = span_h / down + 1, out_w = span_w / down + 1;
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  TORCH_CHECK(in_h * in_w <= kMax && out_h * out_w <= kMax && in_h * up <= kMax &&
                  in_w * up <= kMax && std::abs(pad_x0) <= kMax && std::abs(pad_y0) <= kMax,
              "plane too large for the compiled upfirdn2d");

  const at::Tensor input = x.contiguous();
  const at::Tensor taps = kernel.to(x.device(), at::kFloat).contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  if (y.numel() == 0) return y;

  fgnet::Upfirdn2dParams p{};
  p.x = input.data_ptr();
  p.kernel = taps.data_ptr<float>();
  p.y = y.data_ptr();
  p.planes = x.size(0) * x.size(1);
  p.in_h = static_cast<int>(in_h);
  p.in_w = static_cast<int>(in_w);
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up = static_cast<int>(up);
  p.down = static_cast<int>(down);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.kernel_h = static_cast<int>(kh);
  p.kernel_w = static_cast<int>(kw);
  check_launch(fgnet::launch_upfirdn2d(p, dtype, c10::cuda::getCurrentCUDAStream().stream()));
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(TORCH_EXTENSION_NAME, CUDA, m) {
  m.impl("bias_act", &bias_act);
  m.impl("upfirdn2d", &upfirdn2d);
}
