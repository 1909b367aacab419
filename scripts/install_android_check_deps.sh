#!/usr/bin/env bash
# Installs what the Android demo's offline checks need (tests/test_android_*.py): a JDK and JUnit for
# imprint-core, aapt/aapt2, apksigner and zipalign for the app compile check, Debian's chromium for the
# browser end-to-end test, and the web demo's npm packages. Idempotent: a second run installs nothing.
# The vendored android-23.jar, dx.jar and ONNX Runtime classes.jar come from ../shared/vendor (never from here).
set -euo pipefail
cd "$(dirname "$0")/.."

# dexdump and libasm-java (ASM) are for `make apk`: ASM rewrites ONNX Runtime's Java 17 classes for dx.
PKGS=(default-jdk-headless junit4 aapt apksigner zipalign dexdump libasm-java chromium fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do
  # dpkg-query says "install ok installed" only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "apt packages: all present"
fi

web=android_demo/web
# npm ci only when node_modules is missing or older than the lock file (it deletes and reinstalls).
if command -v npm >/dev/null; then
  if [ ! -d "$web/node_modules" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "npm packages: up to date"
  fi
else
  echo "npm not found: the browser end-to-end test will be skipped" >&2
fi
