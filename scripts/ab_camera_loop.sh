#!/usr/bin/env bash
# The camera loop's speed at another revision against this checkout's, alternating in one run (a noisy, shared
# machine drifts; alternating spreads the drift over both):
#   bash scripts/ab_camera_loop.sh REV BUNDLE [ROUNDS] [FRAMES]
# REV's runtime is laid out as an importable package in a temp folder and put first on PYTHONPATH; each round
# runs benchmarks/camera_loop.py (frames decoded once, from memory; int8 ONNX) with REV's code, then with this
# checkout's. Prints each run's JSON stats and the median FPS and extract/classify milliseconds of both.
set -euo pipefail
rev="$1"; bundle="$2"; rounds="${3:-5}"; frames="${4:-1000}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="$repo/.venv/bin/python"
tmp="$(mktemp -d)"
trap 'git -C "$repo" worktree remove --force "$tmp/tree" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$repo" worktree add --detach -f "$tmp/tree" "$rev" >/dev/null 2>&1
mkdir -p "$tmp/pkg"
cp -r "$tmp/tree/imprinting" "$tmp/pkg/imprinting"
cp -r "$tmp/tree/runtime" "$tmp/pkg/imprinting/runtime"
cp -r "$tmp/tree/export" "$tmp/pkg/imprinting/export"
args=("$bundle" --frames "$frames" --source memory --json --format onnx --precision int8)
for i in $(seq "$rounds"); do
  PYTHONPATH="$tmp/pkg" "$py" "$tmp/tree/benchmarks/camera_loop.py" "${args[@]}" 2>/dev/null | tail -1 | sed 's/^/old /'
  "$py" "$repo/benchmarks/camera_loop.py" "${args[@]}" 2>/dev/null | tail -1 | sed 's/^/new /'
done | tee "$tmp/runs.txt"
"$py" - "$tmp/runs.txt" <<'PY'
import json, statistics, sys
runs = {"old": [], "new": []}
for line in open(sys.argv[1]):
    who, _, js = line.partition(" ")
    runs[who].append(json.loads(js))
for who, rs in runs.items():
    med = {k: statistics.median(r[k] for r in rs) for k in ("fps", "extract_ms", "classify_ms", "preprocess_ms")}
    print(who, " ".join(f"{k} {v:.3f}" for k, v in med.items()), f"({len(rs)} runs)")
o, n = (statistics.median(r["fps"] for r in runs[w]) for w in ("old", "new"))
print(f"new / old FPS: {n / o:.3f}")
PY
