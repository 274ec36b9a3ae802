#!/usr/bin/env bash
# The GPU bundle's run.sh (packed by scripts/gpu-bundle.sh): on a GPU machine without
# Rust, runs
#   1. the test binaries with OPENKERN_REQUIRE_GPU=1 (a missing adapter fails them),
#   2. `openkern check`, then the full suite with --json and --plot,
#   3. the PyTorch peer on the same shapes with --json (cuBLAS and SDPA on CUDA),
#   4. the comparison of the two,
# writing everything to results/ (or $OUT). `./run.sh --quick` runs the quick tier.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
tier=--full
[ "${1:-}" = "--quick" ] && tier=--quick
out="${OUT:-$here/results}"
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# A container image may lack the Vulkan loader: unpack the bundled one (--with-loaders).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' && ls gl/*.deb >/dev/null 2>&1; then
    echo "== unpacking the bundled Vulkan/EGL loaders"
    for f in gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
# NVIDIA's driver files where the container runtime mounts them but no ICD is registered.
nv=/usr/local/nvidia/share
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ] &&
    ! ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
    export VK_DRIVER_FILES="$nv/vulkan/icd.d/nvidia_icd.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES="$nv/glvnd/egl_vendor.d/10_nvidia.json"
fi

status=0
step() { echo; echo "== $*"; }
start=$(date +%s)

step "adapters"
./openkern info | tee "$out/info.txt"

step "tests (OPENKERN_REQUIRE_GPU=1)"
: >"$out/tests.txt"
for t in tests/*; do
    [ -x "$t" ] || continue
    echo "-- $(basename "$t")" | tee -a "$out/tests.txt"
    if ! OPENKERN_REQUIRE_GPU=1 "$t" -q >>"$out/tests.txt" 2>&1; then
        echo "   FAILED (see $out/tests.txt)"
        status=1
    fi
    tail -n 3 "$out/tests.txt" | grep -E "test result" || true
done

step "openkern check"
./openkern check | tee "$out/check.txt" || status=1

step "openkern bench $tier"
./openkern bench $tier --json "$out/openkern.json" --plot "$out/roofline.svg" \
    | tee "$out/bench.txt" || status=1

step "PyTorch peer"
if python3 -c "import torch" 2>/dev/null; then
    python3 peers/torch_suite.py --openkern ./openkern $tier --json "$out/torch.json" \
        2>"$out/torch.log" || status=1
    tail -n 1 "$out/torch.log"
else
    echo "torch_suite: skipped: PyTorch is not installed (pip install torch)"
fi

if [ -f "$out/torch.json" ] && [ -f "$out/openkern.json" ]; then
    step "openkern / PyTorch"
    ./openkern compare "$out/torch.json" "$out/openkern.json" | tee "$out/compare.txt"
fi

echo
echo "done in $(($(date +%s) - start)) s; results in $out (status $status)"
exit $status
