#!/usr/bin/env bash
# Builds the installable demo APK offline, without Gradle (`make apk`): the app, imprint-core, ONNX Runtime's
# Java classes and native libraries (arm64-v8a, armeabi-v7a, x86_64) and a model bundle in assets/bundle/.
# The same offline steps as check_app.sh, extended:
#   1. aapt2 compiles and links the app's resources against android-23.jar (package, SDK levels and version
#      from app/build.gradle; android:extractNativeLibs="false", as Gradle sets for these SDK levels)
#   2. javac compiles imprint-core and the app for Java 8 against android-23.jar and ONNX Runtime's classes
#   3. Desugar.java (ASM) rewrites ONNX Runtime's Java 17 classes to Java 8 (nestmates, 4 lambdas), dx dexes all
#   4. pack_apk.py adds classes.dex, the bundle's manifest.json and the ONNX file the app opens (stored), and
#      the native libraries (stored, 16 KiB-aligned); zipalign -c checks the alignment
#   5. apksigner signs it (v1-v3) with a debug key made once in cache/android/debug.p12, then verifies it
#
#   android_demo/tools/build_apk.sh [--bundle DIR] [--out APK]
#     --bundle  an exported bundle (default: bundles/lite0-imagenet, which `make apk` exports if absent)
#     --out     the signed APK (default: build/android/imprinting-demo.apk); OUT minus .apk + -unsigned.apk is
#               the same APK unsigned and aligned, to sign for release (android_demo/README.md)
# The ONNX Runtime AAR comes from scripts/fetch_onnxruntime_aar.sh (npm registry, sha256-pinned, cached in
# cache/android/). Exit 77 with "SKIP: reason" when a tool, a vendored file or the network is missing.
set -euo pipefail
demo="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$demo/.." && pwd)"
vendor="${VENDOR:-$repo/../shared/vendor}"
bundle="$repo/bundles/lite0-imagenet"
out="$repo/build/android/imprinting-demo.apk"
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--bundle DIR] [--out APK]" >&2; exit 2 ;;
  esac
done
skip() { echo "SKIP: $*"; exit 77; }
t0=$(date +%s)

android_jar="$vendor/android/android-23.jar"
dx_jar="$vendor/android/dx.jar"
for f in "$android_jar" "$dx_jar"; do
  [ -f "$f" ] || skip "vendored file $f is absent (see shared/vendor/README.md)"
done
for t in aapt2 javac java keytool apksigner zipalign python3 unzip; do
  command -v "$t" >/dev/null || skip "$t not found (run scripts/install_android_check_deps.sh)"
done
asm="/usr/share/java/asm.jar:/usr/share/java/asm-tree.jar"
for f in ${asm//:/ }; do
  [ -f "$f" ] || skip "$f not found (Debian libasm-java; run scripts/install_android_check_deps.sh)"
done
[ -f "$bundle/manifest.json" ] || { echo "error: no bundle at $bundle (imprint export --out $bundle)" >&2; exit 1; }

set +e
aar="$(bash "$repo/scripts/fetch_onnxruntime_aar.sh" "$repo/cache/android")"
rc=$?
set -e
[ "$rc" = 0 ] || { echo "$aar"; exit "$rc"; }
case "$aar" in /*) ;; *) aar="$repo/$aar" ;; esac

b="$(mktemp -d)"
trap 'rm -rf "$b"' EXIT
app="$demo/app/src/main"
gradle="$demo/app/build.gradle"
gradle_value() { sed -n "s/^ *$1 *'\{0,1\}\([^' ]*\)'\{0,1\} *$/\1/p" "$gradle" | head -1; }
package="$(gradle_value applicationId)"
min_sdk="$(gradle_value minSdk)"
target_sdk="$(gradle_value targetSdk)"
version_code="$(gradle_value versionCode)"
version_name="$(gradle_value versionName)"
for v in package min_sdk target_sdk version_code version_name; do
  [ -n "${!v}" ] || { echo "error: $v not found in $gradle" >&2; exit 1; }
done
echo "== $package $version_name (minSdk $min_sdk, targetSdk $target_sdk), bundle $bundle"

# 1. resources and the manifest
sed -e "s|<manifest |<manifest package=\"$package\" |" \
    -e 's|<application|<application android:extractNativeLibs="false"|' "$app/AndroidManifest.xml" >"$b/AndroidManifest.xml"
mkdir -p "$b/gen" "$b/core" "$b/classes" "$b/ort" "$b/tool" "$b/stage/assets/bundle" "$b/stage/lib"
aapt2 compile --dir "$app/res" -o "$b/res.zip"
aapt2 link -I "$android_jar" --manifest "$b/AndroidManifest.xml" --min-sdk-version "$min_sdk" \
  --target-sdk-version "$target_sdk" --version-code "$version_code" --version-name "$version_name" \
  --java "$b/gen" -o "$b/base.apk" "$b/res.zip"

# 2. Java: the same flags as check_app.sh (API 23's class library, Java 8, warnings are errors)
(cd "$b" && unzip -q "$aar" classes.jar 'jni/arm64-v8a/*' 'jni/armeabi-v7a/*' 'jni/x86_64/*')
jc() { (cd "$b" && javac -Xlint:-options -Werror -encoding UTF-8 -source 8 -target 8 -bootclasspath "$android_jar" "$@"); }
jc -d "$b/core" $(find "$demo/imprint-core/src/main/java" -name '*.java')
jc -cp "$b/classes.jar:$b/core" -d "$b/classes" $(find "$app/java" "$b/gen" -name '*.java')

# 3. ONNX Runtime's classes to Java 8, then one dex
(cd "$b" && javac -Xlint:-options -encoding UTF-8 -cp "$asm" -d "$b/tool" "$demo/tools/Desugar.java")
java -cp "$asm:$b/tool" Desugar "$b/classes.jar" "$b/ort"
cp -r "$b/core/." "$b/ort/." "$b/classes/"
java -jar "$dx_jar" --dex --min-sdk-version="$min_sdk" --output="$b/stage/classes.dex" "$b/classes"

# 4. assets and native libraries: the manifest and the ONNX file the app opens (Manifest.selectOnnx: int8, then fp32)
model="$(python3 - "$bundle/manifest.json" <<'EOF'
import json, sys
ex = json.load(open(sys.argv[1], encoding="utf-8")).get("extractors", [])
for p in ("int8", "fp32"):
    for e in ex:
        if e.get("format") == "onnx" and e.get("precision") == p:
            print(e["file"]); sys.exit(0)
sys.exit("the bundle has no ONNX extractor")
EOF
)"
cp "$bundle/manifest.json" "$bundle/$model" "$b/stage/assets/bundle/"
for abi in arm64-v8a armeabi-v7a x86_64; do
  mkdir -p "$b/stage/lib/$abi"
  for so in libonnxruntime.so libonnxruntime4j_jni.so; do
    cp "$b/jni/$abi/$so" "$b/stage/lib/$abi/"
  done
done
python3 "$demo/tools/pack_apk.py" "$b/unsigned.apk" "$b/base.apk" "$b/stage"
zipalign -c -p 4 "$b/unsigned.apk"

# 5. sign with the debug key (made once, so a rebuilt APK installs over the last one) and verify
ks="$repo/cache/android/debug.p12"
if [ ! -f "$ks" ]; then
  mkdir -p "$(dirname "$ks")"
  keytool -genkeypair -keystore "$b/debug.p12" -storetype PKCS12 -storepass android -keypass android \
    -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
  mv -n "$b/debug.p12" "$ks"
fi
apksigner sign --ks "$ks" --ks-pass pass:android --ks-key-alias androiddebugkey --out "$b/app.apk" "$b/unsigned.apk"
apksigner verify --min-sdk-version "$min_sdk" "$b/app.apk"
zipalign -c -p 4 "$b/app.apk"

mkdir -p "$(dirname "$out")"
cp "$b/unsigned.apk" "${out%.apk}-unsigned.apk"
cp "$b/app.apk" "$out"
size="$(python3 -c 'import os, sys; print(f"{os.path.getsize(sys.argv[1]) / 1e6:.1f}")' "$out")"
echo "built $out ($size MB, model $model, debug-signed) in $(( $(date +%s) - t0 )) s"
