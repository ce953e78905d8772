// Interface between the PyTorch binding (ops.cpp, host compiler) and the CUDA launchers
// (bias_act.cu, upfirdn2d.cu, nvcc): plain parameter records over raw pointers, so the
// .cu files need no PyTorch headers.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace fgnet {

// Element types the kernels are instantiated for; arithmetic is always in fp32.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Bias + leaky ReLU on a contiguous tensor whose dim 1 has `channels` entries and whose
// dims after 1 hold `inner` elements in all.
//   forward (grad == false): y = (v > 0 ? v : v * slope) * gain, v = x + bias[channel]
//   gradient (grad == true):  y = x * gain * (ref > 0 ? 1 : slope), x = dL/d(out), ref = out
struct BiasActParams {
  const void* x;
  const void* bias;  // nullptr: no bias (always nullptr in gradient mode)
  const void* ref;   // gradient mode only: the saved forward output
  void* y;
  int64_t numel;
  int64_t channels;
  int64_t inner;
  float slope;
  float gain;
  bool grad;
};

// upfirdn2d on `planes` contiguous in_h x in_w planes: zero-insertion upsampling by `up`,
// padding (the bottom/right pads are implied by out_h/out_w), true 2-D convolution with the
// kernel_h x kernel_w fp32 `kernel`, then keeping every `down`-th sample:
//   y[oy, ox] = sum_{i,j} u[oy*down - pad_y0 + i, ox*down - pad_x0 + j]
//                         * kernel[kernel_h-1-i, kernel_w-1-j]
// where u[m, n] = x[m/up, n/up] when up divides both and they are in range, else 0.
struct Upfirdn2dParams {
  const void* x;
  const float* kernel;
  void* y;
  int64_t planes;
  int in_h, in_w;
  int out_h, out_w;
  int up, down;
  int pad_x0, pad_y0;
  int kernel_h, kernel_w;
};

// Enqueue the op on `stream`; returns the launch status (cudaGetLastError()).
// `aligned16`: x, ref (if any) and y start on 16-byte boundaries (vector loads allowed).
cudaError_t launch_bias_act(const BiasActParams& p, DType dtype, bool aligned16,
                            cudaStream_t stream);
cudaError_t launch_upfirdn2d(const Upfirdn2dParams& p, DType dtype, cudaStream_t stream);

}  // namespace fgnet
