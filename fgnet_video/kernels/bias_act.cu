// CUDA entry point of the fused bias + leaky ReLU op (kernels in bias_act_kernels.h).
#include "bias_act_kernels.h"

namespace fgnet {

cudaError_t launch_bias_act(const BiasActParams& p, DType dtype, bool aligned16,
                            cudaStream_t stream) {
  const auto launch = [stream](auto kernel, dim3 grid, dim3 block, const BiasActParams& params) {
    kernel<<<grid, block, 0, stream>>>(params);
  };
  switch (dtype) {
    case DType::kFloat32:
      dispatch_bias_act<float>(p, aligned16, launch);
      break;
    case DType::kFloat16:
      dispatch_bias_act<__half>(p, aligned16, launch);
      break;
    case DType::kBFloat16:
      dispatch_bias_act<__nv_bfloat16>(p, aligned16, launch);
      break;
  }
  return cudaGetLastError();
}

}  // namespace fgnet
