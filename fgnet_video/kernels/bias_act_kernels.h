// Fused bias + leaky ReLU kernel (forward and gradient modes, see BiasActParams) and the
// host-side choice of its instantiation. Each thread handles packs of 16 bytes (4 fp32 or
// 8 fp16/bf16 values) with one 128-bit load and store per operand when the pointers allow.
#pragma once

#include "common.h"
#include "ops.h"

namespace fgnet {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, bool GRAD, bool HAS_BIAS, int VEC>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(BiasActParams p) {
  const T* __restrict__ x = static_cast<const T*>(p.x);
  const T* __restrict__ bias = static_cast<const T*>(p.bias);
  const T* __restrict__ ref = static_cast<const T*>(p.ref);
  T* __restrict__ y = static_cast<T*>(p.y);
  const float slope = p.slope;
  const float gain = p.gain;
  const int64_t packs = p.numel / VEC;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;

  for (int64_t pack = first; pack < packs; pack += stride) {
    const int64_t base = pack * VEC;
    const Pack<T, VEC> in = *reinterpret_cast<const Pack<T, VEC>*>(x + base);
    Pack<T, VEC> aux;
    if constexpr (GRAD) aux = *reinterpret_cast<const Pack<T, VEC>*>(ref + base);
    // channel of element `base`, then advanced element by element without dividing again
    const int64_t row = HAS_BIAS ? div_nonneg(base, p.inner) : 0;
    int64_t col = HAS_BIAS ? base - row * p.inner : 0;
    int64_t channel = HAS_BIAS ? row - div_nonneg(row, p.channels) * p.channels : 0;
    Pack<T, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      float v = to_float(in.v[k]);
      if constexpr (GRAD) {
        v *= to_float(aux.v[k]) > 0.0f ? gain : gain * slope;
      } else {
        if constexpr (HAS_BIAS) {
          v += to_float(bias[channel]);
          if (++col == p.inner) {
            col = 0;
            channel = channel + 1 == p.channels ? 0 : channel + 1;
          }
        }
        v = (v > 0.0f ? v : v * slope) * gain;
      }
      out.v[k] = from_float<T>(v);
    }
    *reinterpret_cast<Pack<T, VEC>*>(y + base) = out;
  }

  // the numel % VEC trailing elements, one per thread
  const int64_t tail = packs * VEC + first;
  if (tail < p.numel) {
    float v = to_float(x[tail]);
    if constexpr (GRAD) {
      v *= to_float(ref[tail]) > 0.0f ? gain : gain * slope;
    } else {
      if constexpr (HAS_BIAS) v += to_float(bias[(tail / p.inner) % p.channels]);
      v = (v > 0.0f ? v : v * slope) * gain;
    }
    y[tail] = from_float<T>(v);
  }
}

// Pick the instantiation for `p` and start it through `launch(kernel, grid, block, params)`.
// Returns a short name of the chosen variant.
template <typename T, typename Launch>
const char* dispatch_bias_act(const BiasActParams& p, bool aligned16, Launch&& launch) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vector = aligned16 && p.numel >= kVec;
  const int vec = vector ? kVec : 1;
  const dim3 grid(static_cast<unsigned>(grid_size(p.numel / vec)));
  const dim3 block(kThreads);
  const bool has_bias = !p.grad && p.bias != nullptr;
  if (p.grad) {
    if (vector) {
      launch(bias_act_kernel<T, true, false, kVec>, grid, block, p);
      return "grad-vector";
    }
    launch(bias_act_kernel<T, true, false, 1>, grid, block, p);
    return "grad-scalar";
  }
  if (has_bias) {
    if (vector) {
      launch(bias_act_kernel<T, false, true, kVec>, grid, block, p);
      return "bias-vector";
    }
    launch(bias_act_kernel<T, false, true, 1>, grid, block, p);
    return "bias-scalar";
  }
  if (vector) {
    launch(bias_act_kernel<T, false, false, kVec>, grid, block, p);
    return "nobias-vector";
  }
  launch(bias_act_kernel<T, false, false, 1>, grid, block, p);
  return "nobias-scalar";
}

}  // namespace fgnet
