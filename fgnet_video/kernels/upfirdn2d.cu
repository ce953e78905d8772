// CUDA entry point of the upfirdn2d op (kernels in upfirdn2d_kernels.h).
#include "upfirdn2d_kernels.h"

namespace fgnet {

cudaError_t launch_upfirdn2d(const Upfirdn2dParams& p, DType dtype, cudaStream_t stream) {
  const auto launch = [stream](auto kernel, dim3 grid, dim3 block,
                               const Upfirdn2dParams& params) {
    kernel<<<grid, block, 0, stream>>>(params);
  };
  switch (dtype) {
    case DType::kFloat32:
      dispatch_upfirdn2d<float>(p, launch);
      break;
    case DType::kFloat16:
      dispatch_upfirdn2d<__half>(p, launch);
      break;
    case DType::kBFloat16:
      dispatch_upfirdn2d<__nv_bfloat16>(p, launch);
      break;
  }
  return cudaGetLastError();
}

}  // namespace fgnet
