// CPU emulation of the plugin's CUDA kernels, so tests can check their indexing without a GPU.
// The kernel headers are compiled as plain C++: every block of a launch runs in turn, each of
// its threads as a std::thread, __shared__ arrays are static (one block at a time) and
// __syncthreads is a std::barrier. The host-side dispatch (choice of kernel, grid) is the
// production code. Only fp32 is instantiated; the stand-in fp16/bf16 headers declare types.
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

thread_local dim3 threadIdx;
dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
using std::max;
using std::min;

#include "bias_act_kernels.h"
#include "upfirdn2d_kernels.h"

namespace {

struct EmulatedLaunch {
  template <typename Kernel, typename Params>
  void operator()(Kernel kernel, dim3 grid, dim3 block, const Params& params) const {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = dim3(x, y, z);
          std::barrier<> barrier(threads);
          block_barrier = &barrier;
          std::vector<std::thread> pool;
          pool.reserve(threads);
          for (unsigned t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
              threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
              kernel(params);
            });
          }
          for (auto& thread : pool) thread.join();
        }
      }
    }
  }
};

}  // namespace

extern "C" const char* emu_bias_act(const float* x, const float* bias, const float* ref,
                                    float* y, int64_t numel, int64_t channels, int64_t inner,
                                    float slope, float gain, int grad, int aligned16) {
  fgnet::BiasActParams p{x, bias, ref, y, numel, channels, inner, slope, gain, grad != 0};
  return fgnet::dispatch_bias_act<float>(p, aligned16 != 0, EmulatedLaunch{});
}

extern "C" const char* emu_upfirdn2d(const float* x, const float* kernel, float* y,
                                     int64_t planes, int in_h, int in_w, int out_h, int out_w,
                                     int up, int down, int pad_x0, int pad_y0, int kernel_h,
                                     int kernel_w) {
  fgnet::Upfirdn2dParams p{x,    kernel, y,      planes, in_h,     in_w,    out_h,
                           out_w, up,    down,   pad_x0, pad_y0, kernel_h, kernel_w};
  return fgnet::dispatch_upfirdn2d<float>(p, EmulatedLaunch{});
}
