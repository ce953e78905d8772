#!/usr/bin/env bash
# Compile the kernel sources against this torch's headers, without a GPU, every warning an
# error:
#   - fgnet_video/kernels/*.cu with nvcc for sm_75..sm_90: syntax and type check, registers
#     and spills per kernel;
#   - ops.cpp (the dispatcher registration, ATen/c10 headers only) with the host compiler and
#     the flags of torch's JIT build, timed. A CPU-only torch's wheel ships the c10/cuda
#     headers but one that its build generates, c10/cuda/impl/cuda_cmake_macros.h; then a
#     stand-in with the CUDA wheel's content (one #define) is put first on the include path.
# Linking and loading the library need a CUDA build of torch: `fgnet-video doctor --build
# --arch 9.0` builds it ahead on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r cuda_home includes < <(python3 - <<'PY'
import sysconfig
from torch.utils.cpp_extension import include_paths
from fgnet_video.kernels.toolkit import find_cuda_home
toolkit = find_cuda_home()
paths = [*include_paths(), sysconfig.get_paths()["include"]]
print(toolkit.home if toolkit else "none", " ".join(f"-isystem {p}" for p in paths))
PY
)
if [ "$cuda_home" = none ]; then echo "no CUDA toolkit found (set CUDA_HOME)" >&2; exit 1; fi
arches="-gencode=arch=compute_75,code=sm_75 -gencode=arch=compute_80,code=sm_80
        -gencode=arch=compute_86,code=sm_86 -gencode=arch=compute_89,code=sm_89
        -gencode=arch=compute_90,code=sm_90"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for source in fgnet_video/kernels/*.cu; do
    # shellcheck disable=SC2086
    "$cuda_home/bin/nvcc" $includes -I fgnet_video/kernels -DTORCH_API_INCLUDE_EXTENSION_H \
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
macros=c10/cuda/impl/cuda_cmake_macros.h
if ! python3 -c "import sys, torch.utils.cpp_extension as c, os
sys.exit(not any(os.path.isfile(os.path.join(p, '$macros')) for p in c.include_paths()))"; then
    mkdir -p "$out/stand-in/$(dirname "$macros")"
    printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$out/stand-in/$macros"
    includes="-isystem $out/stand-in $includes"
fi
start=$(date +%s.%N)
# shellcheck disable=SC2086
"${CXX:-c++}" $includes -isystem "$cuda_home/include" -I fgnet_video/kernels \
    -DTORCH_EXTENSION_NAME=fgnet_video_ops_check -DTORCH_API_INCLUDE_EXTENSION_H \
    -fPIC -std=c++20 -O3 -Wall -Wextra -Werror -c fgnet_video/kernels/ops.cpp -o "$out/ops.o"
echo "ok  fgnet_video/kernels/ops.cpp: compiled in $(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f') s"
