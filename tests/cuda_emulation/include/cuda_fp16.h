// Stand-in for cuda_fp16.h in the CPU emulation: declarations only (the emulation runs fp32).
#pragma once

struct __half {
  unsigned short bits;
};
float __half2float(__half);
__half __float2half_rn(float);
