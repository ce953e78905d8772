// upfirdn2d kernels (contract in Upfirdn2dParams) and the host-side choice between them.
//
// Output pixel (oy, ox) reads the upsampled signal at rows ty .. ty + kernel_h - 1 with
// ty = oy * down - pad_y0; only rows that are multiples of `up` hold input samples, so the
// kernels walk the input rows iy = ceil(ty / up), ... directly (polyphase form): input row iy
// meets kernel tap i = iy * up - ty, i.e. weight kernel[kernel_h - 1 - i] (same for columns).
//
// - upfirdn2d_tiled: compile-time up/down/kernel size; a block stages the input patch behind
//   a TILE_H x TILE_W output tile in shared memory (as fp32) and reuses it for every output
//   of the tile, looping over planes along grid z.
// - upfirdn2d_direct: any factors and kernel size; one output per thread, input read from
//   global memory (served by L1/L2 for the small planes it is chosen for).
#pragma once

#include "common.h"
#include "ops.h"

namespace fgnet {

template <typename T>
__global__ void __launch_bounds__(kThreads) upfirdn2d_direct(Upfirdn2dParams p) {
  const T* __restrict__ x = static_cast<const T*>(p.x);
  const float* __restrict__ kernel = p.kernel;
  T* __restrict__ y = static_cast<T*>(p.y);
  const int64_t plane_size = static_cast<int64_t>(p.out_h) * p.out_w;
  const int64_t total = plane_size * p.planes;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;

  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t plane = div_nonneg(idx, plane_size);
    const int rem = static_cast<int>(idx - plane * plane_size);
    const int oy = rem / p.out_w;
    const int ox = rem - oy * p.out_w;
    const int ty = oy * p.down - p.pad_y0;
    const int tx = ox * p.down - p.pad_x0;
    const int iy_begin = max(ceil_div(ty, p.up), 0);
    const int iy_end = min(floor_div(ty + p.kernel_h - 1, p.up), p.in_h - 1);
    const int ix_begin = max(ceil_div(tx, p.up), 0);
    const int ix_end = min(floor_div(tx + p.kernel_w - 1, p.up), p.in_w - 1);
    const T* __restrict__ plane_x = x + plane * p.in_h * p.in_w;

    float acc = 0.0f;
    for (int iy = iy_begin; iy <= iy_end; ++iy) {
      const float* __restrict__ krow = kernel + (p.kernel_h - 1 - (iy * p.up - ty)) * p.kernel_w;
      const T* __restrict__ xrow = plane_x + static_cast<int64_t>(iy) * p.in_w;
      for (int ix = ix_begin; ix <= ix_end; ++ix) {
        acc += to_float(xrow[ix]) * krow[p.kernel_w - 1 - (ix * p.up - tx)];
      }
    }
    y[idx] = from_float<T>(acc);
  }
}

template <typename T, int UP, int DOWN, int KH, int KW, int TILE_H, int TILE_W>
__global__ void __launch_bounds__(kThreads) upfirdn2d_tiled(Upfirdn2dParams p) {
  // input rows (columns) behind one tile: multiples of UP within a span of
  // (TILE_H - 1) * DOWN + KH upsampled rows
  constexpr int IN_H = ((TILE_H - 1) * DOWN + KH - 1) / UP + 1;
  constexpr int IN_W = ((TILE_W - 1) * DOWN + KW - 1) / UP + 1;
  constexpr int TAPS_Y = (KH + UP - 1) / UP;  // input rows per output, at most
  constexpr int TAPS_X = (KW + UP - 1) / UP;
  __shared__ float s_in[IN_H][IN_W];
  __shared__ float s_k[KH][KW];  // s_k[i][j]: weight of tap (i, j), i.e. the flipped kernel

  const T* __restrict__ x = static_cast<const T*>(p.x);
  T* __restrict__ y = static_cast<T*>(p.y);
  const int tid = threadIdx.x;
  for (int i = tid; i < KH * KW; i += blockDim.x) {
    const int r = i / KW;
    const int c = i - r * KW;
    s_k[r][c] = p.kernel[(KH - 1 - r) * KW + (KW - 1 - c)];
  }

  const int oy0 = blockIdx.y * TILE_H;
  const int ox0 = blockIdx.x * TILE_W;
  const int ty0 = oy0 * DOWN - p.pad_y0;
  const int tx0 = ox0 * DOWN - p.pad_x0;
  const int iy0 = ceil_div(ty0, UP);  // input row of s_in[0]
  const int ix0 = ceil_div(tx0, UP);
  const int64_t in_plane = static_cast<int64_t>(p.in_h) * p.in_w;
  const int64_t out_plane = static_cast<int64_t>(p.out_h) * p.out_w;

  for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
    __syncthreads();  // the previous plane's reads of s_in are done (and s_k is written)
    const T* __restrict__ plane_x = x + plane * in_plane;
    for (int i = tid; i < IN_H * IN_W; i += blockDim.x) {
      const int r = i / IN_W;
      const int c = i - r * IN_W;
      const int iy = iy0 + r;
      const int ix = ix0 + c;
      const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
      s_in[r][c] = inside ? to_float(plane_x[iy * p.in_w + ix]) : 0.0f;
    }
    __syncthreads();

    T* __restrict__ plane_y = y + plane * out_plane;
    for (int i = tid; i < TILE_H * TILE_W; i += blockDim.x) {
      const int ry = i / TILE_W;
      const int rx = i - ry * TILE_W;
      const int oy = oy0 + ry;
      const int ox = ox0 + rx;
      if (oy >= p.out_h || ox >= p.out_w) continue;
      const int ty = ty0 + ry * DOWN;
      const int tx = tx0 + rx * DOWN;
      const int r0 = ceil_div(ty, UP);  // first input row of this output
      const int c0 = ceil_div(tx, UP);
      const int phase_y = r0 * UP - ty;  // its tap, in [0, UP)
      const int phase_x = c0 * UP - tx;
      const float* s_row = &s_in[r0 - iy0][c0 - ix0];
      float acc = 0.0f;
#pragma unroll
      for (int a = 0; a < TAPS_Y; ++a) {
        const int tap_y = phase_y + a * UP;
        if (tap_y < KH) {
#pragma unroll
          for (int b = 0; b < TAPS_X; ++b) {
            const int tap_x = phase_x + b * UP;
            if (tap_x < KW) acc += s_row[a * IN_W + b] * s_k[tap_y][tap_x];
          }
        }
      }
      plane_y[oy * p.out_w + ox] = from_float<T>(acc);
    }
  }
}

template <typename T, int UP, int DOWN, int KH, int KW, int TILE_H, int TILE_W, typename Launch>
void launch_tiled(const Upfirdn2dParams& p, Launch&& launch) {
  const dim3 grid((p.out_w + TILE_W - 1) / TILE_W, (p.out_h + TILE_H - 1) / TILE_H,
                  static_cast<unsigned>(p.planes < kMaxBlocks ? p.planes : kMaxBlocks));
  launch(upfirdn2d_tiled<T, UP, DOWN, KH, KW, TILE_H, TILE_W>, grid, dim3(kThreads), p);
}

// Pick the kernel for `p` and start it through `launch(kernel, grid, block, params)`.
// Tiles pay off once a plane fills most of a tile; smaller planes go direct.
// Returns a short name of the chosen variant.
template <typename T, typename Launch>
const char* dispatch_upfirdn2d(const Upfirdn2dParams& p, Launch&& launch) {
  const bool k4 = p.kernel_h == 4 && p.kernel_w == 4;
  const bool large = p.out_h >= 8 && p.out_w >= 16;
  if (k4 && large && p.up == 1 && p.down == 1) {
    launch_tiled<T, 1, 1, 4, 4, 16, 32>(p, launch);
    return "tiled-up1-down1-k4";
  }
  if (k4 && large && p.up == 2 && p.down == 1) {
    launch_tiled<T, 2, 1, 4, 4, 16, 64>(p, launch);
    return "tiled-up2-down1-k4";
  }
  if (k4 && large && p.up == 1 && p.down == 2) {
    launch_tiled<T, 1, 2, 4, 4, 16, 32>(p, launch);
    return "tiled-up1-down2-k4";
  }
  const int64_t total = static_cast<int64_t>(p.out_h) * p.out_w * p.planes;
  launch(upfirdn2d_direct<T>, dim3(static_cast<unsigned>(grid_size(total))), dim3(kThreads), p);
  return "direct";
}

}  // namespace fgnet
