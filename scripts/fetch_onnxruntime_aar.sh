#!/usr/bin/env bash
# Fetches ONNX Runtime's official Android AAR (release 1.29: classes.jar and libonnxruntime.so +
# libonnxruntime4j_jni.so for arm64-v8a, armeabi-v7a, x86, x86_64) into an ignored cache, for `make apk`.
# Google Maven is not reachable from CI, but the npm registry is: the npm package com.github.asus4.onnxruntime
# 0.4.9 (a Unity package, 150 MB) carries the AAR as package/Plugins/Android/onnxruntime.aar.
# The AAR's sha256 is pinned below; a file that does not match is refused (exit 1).
#
#   scripts/fetch_onnxruntime_aar.sh [CACHE_DIR]     # default: cache/android; prints the AAR's path
#
# Reuses a cached AAR whose sha256 matches. Exit 77 with "SKIP: reason" when npm is missing or the registry
# cannot be reached, so the tests that need it skip rather than fail.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=com.github.asus4.onnxruntime
VERSION=0.4.9
AAR_SHA256=98cddbac92640b4a6af72a03c42e0491851f366d3da66bbaeb5dd66310946cf2
cache="${1:-cache/android}"
aar="$cache/onnxruntime-1.29.0.aar"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$aar" ] && [ "$(sha "$aar")" = "$AAR_SHA256" ]; then
  echo "$aar"
  exit 0
fi
command -v npm >/dev/null || { echo "SKIP: npm not found (it fetches the ONNX Runtime AAR; run scripts/install_android_check_deps.sh)"; exit 77; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --loglevel=error "$PACKAGE@$VERSION" >npm.log 2>&1); then
  why="$(grep -m1 -E 'npm (error|ERR!) (code|[A-Za-z]+Error)' "$tmp/npm.log" | tail -1)"
  echo "SKIP: npm pack $PACKAGE@$VERSION failed (no network or registry?): ${why:-see the npm log}"
  exit 77
fi
tar --no-same-owner -xzf "$tmp/$PACKAGE-$VERSION.tgz" -C "$tmp" package/Plugins/Android/onnxruntime.aar
got="$(sha "$tmp/package/Plugins/Android/onnxruntime.aar")"
if [ "$got" != "$AAR_SHA256" ]; then
  echo "error: onnxruntime.aar from $PACKAGE@$VERSION has sha256 $got, expected $AAR_SHA256" >&2
  exit 1
fi
mv "$tmp/package/Plugins/Android/onnxruntime.aar" "$aar"
echo "$aar"
