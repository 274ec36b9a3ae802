#!/usr/bin/env bash
# Packs what a GPU machine without a Rust toolchain needs into .dist/gpu-bundle/:
#   openkern            the release CLI (bench, check, compare, info)
#   tests/              the release test binaries, named as cargo printed them
#   peers/              the peer suites (PyTorch, NumPy) and their shared driver
#   gl/                 Vulkan/EGL loader packages, only with --with-loaders (see below)
#   run.sh              GPU tests, the full suite, the PyTorch peer, the comparison,
#                       the matmul summary (matmul_summary.py)
# Copy the folder to the GPU box and run `./run.sh` there (`./run.sh --quick` for a
# smoke test, `./run.sh --matmul` for issue #11's matmul figures); results land in
# results/ beside it, or in $OUT.
#
#   scripts/gpu-bundle.sh                  # build and pack
#   scripts/gpu-bundle.sh --with-loaders   # also download libvulkan1 & co. (amd64 .debs)
#                                          # for boxes whose image has no Vulkan loader
#   scripts/gpu-bundle.sh --matmul         # only the matmul, matmul_configs and shaders
#                                          # test binaries, stripped: small enough for
#                                          # the device tool's 64 MiB carry
#
# With the device tool (no Rust on its machines; they have PyTorch and no Vulkan
# loader), one build here and one call:
#   scripts/gpu-bundle.sh --matmul --with-loaders
#   run(command="cd .dist/gpu-bundle && ./run.sh --matmul", carry=[".dist/gpu-bundle"],
#       timeout_s=600)
# run.sh writes its results to $OUT, which comes back (8 files in --matmul mode).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.dist/gpu-bundle
with_loaders=0
matmul=0
for arg in "$@"; do
    case "$arg" in
    --with-loaders) with_loaders=1 ;;
    --matmul) matmul=1 ;;
    *) echo "usage: $0 [--with-loaders] [--matmul]" >&2; exit 2 ;;
    esac
done
tests=(--workspace)
[ "$matmul" = 1 ] && tests=(--workspace --test matmul --test matmul_configs --test shaders)

echo "== building the release binary and test binaries"
cargo build --release --workspace --bin openkern
# --no-run prints one JSON message per compiled artifact; test executables carry
# "profile":{"test":true,...} and an "executable" path. The CLI's own end-to-end test
# is left out: it runs the binary at the path it was built at.
cargo test --release "${tests[@]}" --no-run --message-format=json-render-diagnostics \
    >.dist-test-messages.json
rm -rf "$out"
mkdir -p "$out/tests" "$out/peers"
python3 - "$out/tests" .dist-test-messages.json <<'PY'
import json, shutil, sys, os
dest = sys.argv[1]
for line in open(sys.argv[2]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    if m["target"]["name"] == "cli":
        continue
    exe = m["executable"]
    shutil.copy2(exe, os.path.join(dest, os.path.basename(exe)))
    print("  test binary", os.path.basename(exe))
PY
rm -f .dist-test-messages.json
cp target/release/openkern "$out/"
cp benches/peers/*.py "$out/peers/"
cp scripts/gpu-run.sh "$out/run.sh"
cp scripts/matmul-summary.py "$out/matmul_summary.py"
chmod +x "$out/run.sh" "$out/openkern"
if [ "$matmul" = 1 ] && command -v strip >/dev/null; then
    strip "$out/openkern" "$out"/tests/*
fi
if [ "$with_loaders" = 1 ]; then
    echo "== downloading Vulkan/EGL loader packages (amd64) into $out/gl"
    mkdir -p "$out/gl" /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd "$out/gl" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
git rev-parse HEAD >"$out/COMMIT" 2>/dev/null || echo unknown >"$out/COMMIT"
du -sh "$out"
echo "packed $out: copy it to the GPU box and run ./run.sh there"
