#!/usr/bin/env bash
# The device side on the device's architecture: the runtime and a bundle on aarch64 (Raspberry Pi class),
# under qemu-aarch64 user-mode emulation, with the same wheels a Pi installs.
#
#   bash scripts/check_aarch64.sh [BUNDLE]        (root: it registers binfmt_misc and uses chroot)
#
# 1. a Debian bookworm arm64 root (Python 3.11) made with debootstrap, cached in cache/aarch64/root;
# 2. aarch64 wheels fetched on the host by `pip download --platform ... --only-binary=:all:` at the versions of
#    constraints.txt (cached in cache/aarch64/wheels), installed into /work/venv inside the root with the
#    runtime extras only (numpy, onnxruntime, ai-edge-litert, OpenCV; no torch);
# 3. inside: the runtime's unit tests that need no training side, and `imprint learn`, `classify` and the
#    camera loop on a folder source, end to end;
# 4. with BUNDLE (default bundles/lite0-imagenet when present): every file of the bundle against the x86 fp32
#    ONNX embeddings of the export's parity images, as a Cortex-A72 (Pi 4, no dot product) and a Cortex-A76
#    (Pi 5, with dot product): benchmarks/results/isa_parity.md.
# Prints "N passed, N failed"; skips with the reason where qemu, root or the registries are unavailable.
# Emulation checks correctness, never speed. About 10 minutes with the root and wheels cached (measured on
# 2 cores), plus about 4 the first time (debootstrap 3 min, wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${AARCH64_CACHE:-$REPO/cache/aarch64}
ROOT=$CACHE/root
WHEELS=$CACHE/wheels
BUNDLE=${1:-bundles/lite0-imagenet}
BIN=${BIN:-.venv/bin}
PASSED=0
FAILED=0

skip() { echo "SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
check() {  # check NAME COMMAND...: run, count, show the tail on failure
  local name=$1; shift
  echo "== $name"
  if "$@" > "$CACHE/last.log" 2>&1; then PASSED=$((PASSED + 1)); tail -1 "$CACHE/last.log";
  else FAILED=$((FAILED + 1)); echo "FAILED: $name"; tail -20 "$CACHE/last.log"; fi
}

command -v qemu-aarch64-static >/dev/null || skip "qemu-user-static is not installed (apt-get install qemu-user-static)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || skip "needs root for binfmt_misc and chroot"
mkdir -p "$CACHE" "$WHEELS"

# binfmt_misc: run aarch64 binaries through qemu, also inside the chroot (flag F).
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || skip "cannot mount binfmt_misc"
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register || skip "cannot register qemu-aarch64"
fi

if [ ! -x "$ROOT/usr/bin/python3" ]; then
  echo "== debootstrap arm64 bookworm (once)"
  rm -rf "$ROOT"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOT" \
    http://deb.debian.org/debian > "$CACHE/debootstrap.log" 2>&1 || skip "debootstrap failed (see $CACHE/debootstrap.log)"
fi

echo "== aarch64 wheels (cached)"
PLATFORMS=""
for p in manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_26_aarch64 manylinux_2_27_aarch64 manylinux_2_28_aarch64 manylinux_2_31_aarch64 manylinux_2_34_aarch64 manylinux_2_35_aarch64; do
  PLATFORMS="$PLATFORMS --platform $p"
done
"$BIN/pip" download -q --dest "$WHEELS" $PLATFORMS --python-version 3.11 --implementation cp --abi cp311 \
  --only-binary=:all: -c constraints.txt numpy onnxruntime ai-edge-litert opencv-python-headless pytest \
  hypothesis onnx "setuptools>=68" 2>&1 | grep -v "WARNING: Location" || true
ls "$WHEELS"/onnxruntime-*aarch64*.whl >/dev/null 2>&1 || skip "could not fetch aarch64 wheels from the registry"

# What a Pi 4 shows in /proc/cpuinfo and /sys (onnxruntime's cpuinfo reads them, and prints errors without
# them). Plain files, not mounts: under qemu-user the host's would describe an x86 CPU, which crashes it.
umount "$ROOT/proc" "$ROOT/sys" 2>/dev/null || true
mkdir -p "$ROOT/sys/devices/system/cpu" "$ROOT/proc"
# As many CPUs as this host has: qemu passes thread affinity calls through to the host.
LAST=$(( $(nproc) - 1 ))
for f in possible present online; do echo "0-$LAST" > "$ROOT/sys/devices/system/cpu/$f"; done
for i in $(seq 0 "$LAST"); do
  mkdir -p "$ROOT/sys/devices/system/cpu/cpu$i"
  printf 'processor\t: %s\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
done > "$ROOT/proc/cpuinfo"
echo "Model		: Raspberry Pi 4 Model B (emulated)" >> "$ROOT/proc/cpuinfo"

echo "== the project inside the root"
rm -rf "$ROOT/work/src" "$ROOT/work/wheels"
mkdir -p "$ROOT/work/src" "$ROOT/work/wheels"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$ROOT/work/src"
cp "$WHEELS"/*.whl "$ROOT/work/wheels/"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/work/venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
  QEMU_CPU="${QEMU_CPU:-max}" "$@"; }
if [ ! -x "$ROOT/work/venv/bin/python" ]; then
  chroot "$ROOT" /usr/bin/python3 -m venv /work/venv || skip "cannot make a venv inside the root"
fi
check "install the runtime (no torch)" in_root sh -c "cd /work/src && pip install -q --no-index --find-links /work/wheels \
  numpy onnxruntime ai-edge-litert opencv-python-headless pytest hypothesis onnx 'setuptools>=68' && \
  pip install -q --no-index --no-build-isolation --no-deps -e . && python -c 'import platform, imprinting.runtime; print(platform.machine(), \"runtime imported\")'"

check "runtime unit tests (aarch64)" in_root sh -c "cd /work/src && python -m pytest -q -p no:cacheprovider \
  tests/test_store.py tests/test_store_sync.py tests/test_classifier.py tests/test_images.py tests/test_bundle_extractor.py \
  tests/test_extractor_threads.py tests/test_reliability.py tests/test_shot_offsets.py tests/test_isolation.py tests/test_cli.py"

if [ -f "$BUNDLE/manifest.json" ]; then
  # End to end with the real bundle: teach from files, classify, run the camera loop over a folder.
  rm -rf "$ROOT/work/e2e" && mkdir -p "$ROOT/work/e2e/photos"
  cp -r "$BUNDLE" "$ROOT/work/e2e/bundle"
  "$BIN/python" - "$ROOT/work/e2e/photos" <<'EOF'
import sys
import cv2
import skimage.data
for name in ("chelsea", "coffee", "rocket", "astronaut"):
    im = getattr(skimage.data, name)()
    cv2.imwrite(f"{sys.argv[1]}/{name}.jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    cv2.imwrite(f"{sys.argv[1]}/{name}_flip.jpg", cv2.cvtColor(im[:, ::-1], cv2.COLOR_RGB2BGR))
EOF
  check "imprint learn / classify / camera on a folder (aarch64)" in_root sh -c "cd /work/e2e && \
    imprint learn bundle --store s.npz --label cat photos/chelsea.jpg && \
    imprint learn bundle --store s.npz --label cup photos/coffee.jpg && \
    imprint learn bundle --store s.npz --label rocket photos/rocket.jpg && \
    imprint classify bundle --store s.npz photos/chelsea_flip.jpg photos/coffee_flip.jpg photos/rocket_flip.jpg --json > out.json && \
    python -c \"import json; r=[json.loads(l) for l in open('out.json')]; got=[x['categories'][0]['label'] for x in r]; print(got); assert got == ['cat', 'cup', 'rocket'], got\" && \
    imprint camera bundle --store s.npz --source photos --no-stdin --api-port -1 --max-frames 8 --events none && echo camera loop ok"
  check "parity of every file under aarch64 (and emulated x86) kernels" "$BIN/python" benchmarks/isa_parity.py \
    "$BUNDLE" --formats onnx tflite --aarch64-root "$ROOT" --out "$CACHE"
  cat "$CACHE/isa_parity.md"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
