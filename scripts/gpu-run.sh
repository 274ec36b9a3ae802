#!/usr/bin/env bash
# The GPU bundle's run.sh (packed by scripts/gpu-bundle.sh): on a GPU machine without
# Rust, runs
#   1. the test binaries with OPENKERN_REQUIRE_GPU=1 (a missing adapter fails them),
#   2. `openkern check`, then the full suite with --json and --plot,
#   3. the PyTorch peer on the same shapes with --json (cuBLAS and SDPA on CUDA),
#   4. the comparison of the two,
#   5. the matmul summary (matmul_summary.py): f32 GEMM vs cuBLAS f32, f16 on the
#      cooperative-matrix kernel vs cuBLAS f16, GEMV vs the copy probe,
# writing everything to results/ (or $OUT). `./run.sh --quick` runs the quick tier.
# `./run.sh --matmul` (issue #11) runs only the matmul part, in well under the device
# tool's 10 minutes a command and within its 8 result files: the matmul, matmul_configs
# and shaders test binaries (the coop tests print what they ran or skipped; where
# `openkern info` lists a cooperative-matrix configuration, OPENKERN_REQUIRE_COOP=1 makes
# an adapter that runs no coop kernel a failure), the gemm/gemv/linear rows of the full
# suite, the PyTorch peer on the same rows, the comparison and the summary.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
tier=--full
matmul=0
for arg in "$@"; do
    case "$arg" in
    --quick) tier=--quick ;;
    --matmul) matmul=1 ;;
    *) echo "usage: $0 [--quick] [--matmul]" >&2; exit 2 ;;
    esac
done
# the shape-list rows of the matmul family: gemm, gemv and the model linears
# (`linear.` names their ops, not the linear_epilogue / linear-torch extras)
filter=()
[ "$matmul" = 1 ] && filter=(--filter gemm,gemv,linear.)
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

# An adapter that lists a cooperative-matrix configuration must run a coop kernel.
if grep -q "cooperative-matrix [0-9]" "$out/info.txt"; then
    export OPENKERN_REQUIRE_COOP=1
fi

step "tests (OPENKERN_REQUIRE_GPU=1${OPENKERN_REQUIRE_COOP:+ OPENKERN_REQUIRE_COOP=1})"
: >"$out/tests.txt"
for t in tests/*; do
    [ -x "$t" ] || continue
    name="$(basename "$t")"
    if [ "$matmul" = 1 ]; then
        case "$name" in
        matmul-* | matmul_configs-* | shaders-*) ;;
        *) continue ;;
        esac
    fi
    # the matmul tests say which coop kernel ran, or why it was skipped
    flags=(-q)
    case "$name" in matmul-*) flags=(--nocapture) ;; esac
    echo "-- $name" | tee -a "$out/tests.txt"
    if ! OPENKERN_REQUIRE_GPU=1 "$t" "${flags[@]}" >>"$out/tests.txt" 2>&1; then
        echo "   FAILED (see $out/tests.txt)"
        status=1
    fi
    tail -n 3 "$out/tests.txt" | grep -E "test result" || true
done

grep -E "cooperative-matrix|^test coop" "$out/tests.txt" || true

if [ "$matmul" = 0 ]; then
    step "openkern check"
    ./openkern check | tee "$out/check.txt" || status=1
fi

step "openkern bench $tier ${filter[*]}"
plot=(--plot "$out/roofline.svg")
[ "$matmul" = 1 ] && plot=()
./openkern bench $tier "${filter[@]}" --json "$out/openkern.json" "${plot[@]}" \
    | tee "$out/bench.txt" || status=1

step "PyTorch peer"
if python3 -c "import torch" 2>/dev/null; then
    python3 peers/torch_suite.py --openkern ./openkern $tier "${filter[@]}" \
        --json "$out/torch.json" 2>"$out/torch.log" || status=1
    tail -n 1 "$out/torch.log"
else
    echo "torch_suite: skipped: PyTorch is not installed (pip install torch)"
fi

if [ -f "$out/torch.json" ] && [ -f "$out/openkern.json" ]; then
    step "openkern / PyTorch"
    ./openkern compare "$out/torch.json" "$out/openkern.json" | tee "$out/compare.txt"
fi

if [ -f "$out/openkern.json" ]; then
    step "matmul summary (f32 vs cuBLAS f32, f16 coop vs cuBLAS f16, GEMV vs copy)"
    peer=()
    [ -f "$out/torch.json" ] && peer=("$out/torch.json")
    python3 matmul_summary.py "$out/openkern.json" "${peer[@]}" --tests "$out/tests.txt" \
        | tee "$out/matmul-summary.md" || status=1
fi

echo
echo "done in $(($(date +%s) - start)) s; results in $out (status $status)"
exit $status
