#!/usr/bin/env bash
# What a device installs, checked in CI: two fresh virtual environments with only the runtime,
# `pip install -c constraints.txt '.[onnx]'` and `'.[tflite]'` (no torch, no export or dev extras; pytest and
# hypothesis are added only to run the tests), each running
#   1. the test suite: every test that does not need the training side passes or skips with its reason;
#   2. every runtime command as a user types it (learn, classify, eval, classes list/rename/remove/export/
#      import/merge, refine, info, camera on a folder with --max-frames) against a small bundle of its backend.
# The tiny bundles and photos are made first in the dev environment (.venv, `make setup`): building a model
# needs the onnx package or the exporter, which a device never has. Tests that build tiny models themselves
# take them prebuilt from IMPRINT_TINY_ONNX (tests/conftest.py).
#
#   bash scripts/ci_runtime_only.sh [WORKDIR]      (default: a new temporary folder; kept for inspection)
#
# Exits non-zero if anything failed; the summary at the end names each failed step and why.
# RUNTIME_ONLY_TESTS=0 leaves the test suites out (the commands only: a few minutes instead of about 15).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEV_PY=${DEV_PY:-$REPO/.venv/bin/python}
WORK=${1:-$(mktemp -d /tmp/imprint-runtime-only.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
PY=${PYTHON:-python3}
FAILED=()
PASSED=0

say() { printf '\n== %s\n' "$*"; }
fail() { FAILED+=("$1"); printf 'FAIL: %s\n' "$1"; }

# step NAME CMD...: run a command, keep its output in $WORK/logs, record the result.
step() {
    local name=$1 log
    shift
    log="$WORK/logs/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
    if "$@" >"$log" 2>&1; then
        PASSED=$((PASSED + 1))
        printf 'ok:   %s\n' "$name"
    else
        fail "$name (exit $?; $(explain "$log"))"
        tail -n 15 "$log" | sed 's/^/      /'
    fi
}

# The one line that says why a step failed: a missing module is named as such.
explain() {
    local missing
    missing=$(grep -oE "No module named '[^']+'" "$1" | head -n 1)
    if [ -n "$missing" ]; then
        echo "$missing: the runtime imports a package that no runtime extra installs"
    else
        grep -vE '^\s*$' "$1" | tail -n 1 | cut -c1-200
    fi
}

mkdir -p "$WORK/logs"
[ -x "$DEV_PY" ] || { echo "no dev environment at $DEV_PY: run 'make setup' first" >&2; exit 2; }

say "fixtures in the dev environment: tiny ONNX models, a tiny ONNX and a tiny TFLite bundle, photos"
FIX="$WORK/fixtures"
if ! PYTHONPATH="$REPO/tests" "$DEV_PY" - "$FIX" >"$WORK/logs/fixtures.log" 2>&1 <<'EOF'
import sys
from pathlib import Path

import cv2

from tiny import pattern_image, write_tiny_bundle, write_tiny_onnx

fix = Path(sys.argv[1])
models = fix / "tiny_onnx"
models.mkdir(parents=True, exist_ok=True)
for seed in (0, 3, 5):  # the variants the tests build (tiny.py; see tests/conftest.py)
    write_tiny_onnx(models / f"tiny_d16_s32_seed{seed}.onnx", seed=seed)
write_tiny_bundle(fix / "bundle-onnx")

from _export_helpers import tiny_extractor  # noqa: E402

from imprinting.export.exporters import ExportOptions, export_bundle  # noqa: E402
from imprinting.runtime.preprocess import PreprocessSpec  # noqa: E402

export_bundle(tiny_extractor(dim=16), fix / "bundle-tflite",
              ExportOptions(formats=("tflite",), precisions=("fp32",), parity_count=4, probe_count=4,
                            preprocess=PreprocessSpec(input_size=64, resize_size=72)))
# Photos: 4 classes x 12 (refine needs 10 of every class), and frames for the camera.
for kind, name in enumerate(["red", "green", "blue", "yellow"]):
    for seed in range(12):
        d = fix / "photos" / name
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{name}_{seed:02d}.png"), cv2.cvtColor(pattern_image(kind, seed), cv2.COLOR_RGB2BGR))
frames = fix / "frames"
frames.mkdir(exist_ok=True)
for i in range(8):
    cv2.imwrite(str(frames / f"{i:02d}.png"), cv2.cvtColor(pattern_image(i % 3, 50 + i), cv2.COLOR_RGB2BGR))
print("fixtures in", fix)
EOF
then
    tail -n 20 "$WORK/logs/fixtures.log"
    echo "the fixtures could not be made in the dev environment ($DEV_PY); see $WORK/logs/fixtures.log" >&2
    exit 2
fi

# commands VENV BUNDLE: every runtime command, as a user would type it.
commands() {
    local venv=$1 bundle=$2 tag=$3 s="$WORK/$3/s.npz" p="$FIX/photos"
    local imprint="$venv/bin/imprint" run="$WORK/$3"
    step "$tag: imprint info" "$imprint" info "$bundle"
    step "$tag: imprint info --json" "$imprint" info "$bundle" --json
    step "$tag: imprint learn --label" "$imprint" learn "$bundle" --store "$s" --label red "$p"/red/red_00.png "$p"/red/red_01.png
    step "$tag: imprint learn --folders" "$imprint" learn "$bundle" --store "$s" --folders "$p"
    step "$tag: imprint classify --json" "$imprint" classify "$bundle" --store "$s" "$p"/green/green_03.png --top-k 3 --json
    step "$tag: imprint classify a folder --csv" "$imprint" classify "$bundle" --store "$s" "$p" --csv
    step "$tag: imprint classify --explain" "$imprint" classify "$bundle" --store "$s" "$p"/blue/blue_01.png --explain
    step "$tag: imprint eval" "$imprint" eval "$bundle" --folders "$p" --shots 2 --json
    # Without matplotlib (no runtime extra has it) --plot is one clear line, not a traceback.
    step "$tag: imprint eval --plot says it needs matplotlib" \
        bash -c "! '$imprint' eval '$bundle' --folders '$p' --shots 2 --plot '$run/c.png' 2>'$run/plot.err' \
                 && grep -q 'needs matplotlib' '$run/plot.err' && ! grep -q Traceback '$run/plot.err'"
    step "$tag: imprint classes list" "$imprint" classes list --store "$s"
    step "$tag: imprint classes export" "$imprint" classes export --store "$s" --label yellow --out "$run/yellow.npz"
    step "$tag: imprint classes remove" "$imprint" classes remove --store "$s" yellow
    step "$tag: imprint classes import" "$imprint" classes import --store "$s" "$run/yellow.npz"
    step "$tag: imprint classes rename" "$imprint" classes rename --store "$s" blue navy
    step "$tag: imprint classes merge" "$imprint" classes merge "$s" "$run/yellow.npz" --out "$run/merged.npz"
    step "$tag: imprint camera on a folder" \
        bash -c "'$imprint' camera '$bundle' --store '$s' --source '$FIX/frames' --max-frames 5 --api-port -1 \
                 --no-stdin --events all >'$run/camera.out' && test \$(grep -c '\"prediction\"' '$run/camera.out') -eq 5"
    # Last: a refined store must load again (refine --undo opens it).
    step "$tag: imprint refine" "$imprint" refine "$bundle" --store "$s"
    step "$tag: imprint refine --undo" "$imprint" refine "$bundle" --store "$s" --undo
}

# Installed from a copy of the checkout's files (tracked and new, not ignored), so that no stale build/ folder
# of an earlier install leaks removed modules into the wheel.
SRC="$WORK/src"
rm -rf "$SRC" && mkdir -p "$SRC"
git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
    | tar --null -T - -cf - | tar -xf - -C "$SRC"

for extra in onnx tflite; do
    venv="$WORK/venv-$extra"
    say "runtime only: .[$extra] in $venv"
    rm -rf "$venv" "$WORK/$extra"
    mkdir -p "$WORK/$extra"
    step "$extra: venv" "$PY" -m venv "$venv"
    step "$extra: pip install -c constraints.txt .[$extra] pytest hypothesis" \
        bash -c "cd '$SRC' && '$venv/bin/pip' install -q 'pip==26.3' && '$venv/bin/pip' install -q -c constraints.txt '.[$extra]' pytest hypothesis"
    # Nothing of the training side or the dev extras came in with it (tqdm may: ai-edge-litert requires it).
    step "$extra: no torch, onnx, matplotlib or exporter installed" "$venv/bin/python" -c "
import importlib.util, sys
found = [m for m in ('torch', 'onnx', 'matplotlib', 'litert_torch', 'ai_edge_quantizer', 'skimage')
         if importlib.util.find_spec(m)]
print('tqdm', 'installed (a dependency of the extra)' if importlib.util.find_spec('tqdm') else 'not installed')
sys.exit(f'installed although no runtime extra asks for them: {found}' if found else 0)"
    # The tests run from outside the checkout, so that they import the installed package.
    [ "${RUNTIME_ONLY_TESTS:-1}" = 0 ] || step "$extra: pytest -m 'not slow' (runtime tests pass, the others skip with a reason)" \
        bash -c "cd '$WORK/$extra' && IMPRINT_TINY_ONNX='$FIX/tiny_onnx' '$venv/bin/python' -m pytest -q -m 'not slow' \
                 -p no:cacheprovider --rootdir '$SRC' -c '$SRC/pyproject.toml' --basetemp '$WORK/$extra/pytest' \
                 -rs '$SRC/tests' > '$WORK/logs/$extra-pytest.out' 2>&1; rc=\$?; tail -n 1 '$WORK/logs/$extra-pytest.out'; exit \$rc"
    commands "$venv" "$FIX/bundle-$extra" "$extra"
done

say "summary"
grep -h -E '^[0-9]+ (passed|failed)|(passed|failed|skipped).* in ' "$WORK"/logs/*-pytest.out 2>/dev/null | sed 's/^/pytest: /'
echo "$PASSED steps passed, ${#FAILED[@]} failed (logs: $WORK/logs)"
for f in "${FAILED[@]}"; do
    echo "FAILED: $f"
done
[ ${#FAILED[@]} -eq 0 ]
