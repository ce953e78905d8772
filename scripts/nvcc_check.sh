#!/usr/bin/env bash
# Compile the CUDA kernel sources with nvcc against this torch's headers, without a GPU or a
# CUDA build of torch: a syntax and type check of fgnet_video/kernels/*.cu for sm_75..sm_90
# with every warning an error. (The pybind binding ops.cpp needs a CUDA build of torch and
# is compiled by `fgnet-video doctor --build` on a GPU machine.)
set -euo pipefail
cd "$(dirname "$0")/.."
includes=$(python3 - <<'PY'
import sysconfig
from torch.utils.cpp_extension import include_paths
print(" ".join(f"-isystem {p}" for p in [*include_paths(), sysconfig.get_paths()["include"]]))
PY
)
arches="-gencode=arch=compute_75,code=sm_75 -gencode=arch=compute_80,code=sm_80
        -gencode=arch=compute_86,code=sm_86 -gencode=arch=compute_89,code=sm_89
        -gencode=arch=compute_90,code=sm_90"
out=$(mktemp -d)
for source in fgnet_video/kernels/*.cu; do
    # shellcheck disable=SC2086
    nvcc $includes -I fgnet_video/kernels -DTORCH_API_INCLUDE_EXTENSION_H \
        -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
        -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ \
        --expt-relaxed-constexpr $arches --compiler-options -fPIC,-Wall,-Wextra \
        -Werror all-warnings -O3 -std=c++17 -Xptxas -v -c "$source" -o "$out/$(basename "$source").o" \
        2> "$out/log" || { cat "$out/log"; exit 1; }
    registers=$(grep -o 'Used [0-9]* registers' "$out/log" | awk '{print $2}' | sort -n | uniq)
    spills=$(grep -o '[0-9]* bytes spill stores' "$out/log" | awk '$1 > 0' | wc -l)
    echo "ok  $source: $(grep -c 'Used' "$out/log") kernel builds, registers" \
         "$(echo "$registers" | head -1)-$(echo "$registers" | tail -1), $spills with spills"
done
rm -rf "$out"
