#!/usr/bin/env bash
# Offline compile check of the Android app, without Gradle (Google Maven is not reachable from CI):
#   1. aapt2 compiles and links the app's resources against Android API 23 (android-23.jar) -> R.java
#   2. javac compiles imprint-core against android-23.jar's class library (API 23, Java 8)
#   3. javac compiles every app source against android-23.jar + ONNX Runtime's classes.jar + imprint-core
#   4. dx turns the app's and the core's classes into dex (it rejects lambdas and newer class files)
#   5. optional (--apk): packages, aligns and signs a smoke APK, then apksigner verify and aapt dump badging
# Vendored inputs come from ../shared/vendor relative to the repository root (VENDOR=... overrides).
# Prints "android-app: N passed, N failed"; exit 77 with "SKIP: reason" when a tool or input is absent.
set -uo pipefail
demo="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$demo/.." && pwd)"
vendor="${VENDOR:-$repo/../shared/vendor}"
apk=0
[ "${1:-}" = "--apk" ] && apk=1
skip() { echo "SKIP: $*"; exit 77; }

android_jar="$vendor/android/android-23.jar"
dx_jar="$vendor/android/dx.jar"
ort_jar="$vendor/onnxruntime-android/classes.jar"
for f in "$android_jar" "$dx_jar" "$ort_jar"; do
  [ -f "$f" ] || skip "vendored file $f is absent (see shared/vendor/README.md)"
done
for t in aapt2 javac java; do
  command -v "$t" >/dev/null || skip "$t not found (run scripts/install_android_check_deps.sh)"
done
if [ "$apk" = 1 ]; then
  for t in aapt apksigner zipalign keytool; do
    command -v "$t" >/dev/null || skip "$t not found (run scripts/install_android_check_deps.sh)"
  done
fi

b="$(mktemp -d)"
trap 'rm -rf "$b"' EXIT
passed=0
failed=0
step() {  # step NAME COMMAND...: run, count, show the output only on failure
  local name="$1"; shift
  if "$@" >"$b/log" 2>&1; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "FAIL - $name"; sed 's/^/    /' "$b/log" | tail -40
    if grep -q 'MethodHandles\$Lookup' "$b/log"; then
      echo "    hint: a lambda or method reference; use an anonymous class (API 23 and dx have no invokedynamic)"
    fi
    return 1
  fi
}

app="$demo/app/src/main"
# Gradle takes the package from app/build.gradle (namespace); aapt2 needs it in the manifest.
sed 's|<manifest |<manifest package="org.imprinting.demo" |' "$app/AndroidManifest.xml" >"$b/AndroidManifest.xml"
mkdir -p "$b/gen" "$b/core" "$b/classes"

link() {
  aapt2 compile --dir "$app/res" -o "$b/res.zip" &&
  aapt2 link -I "$android_jar" --manifest "$b/AndroidManifest.xml" --min-sdk-version 23 --target-sdk-version 23 \
    --version-code 1 --version-name 0.1 -A "$app/assets" --java "$b/gen" -o "$b/base.apk" "$b/res.zip"
}
# -source/-target 8 with API 23's class library: a Java 9+ API or syntax fails here, as it would on a device.
# javac runs inside the build dir so that a compiler crash report lands there, not in the checkout.
jc() { (cd "$b" && javac -Xlint:-options -Werror -encoding UTF-8 -source 8 -target 8 -bootclasspath "$android_jar" "$@"); }
core() { jc -d "$b/core" $(find "$demo/imprint-core/src/main/java" -name '*.java'); }
appsrc() { jc -cp "$ort_jar:$b/core" -d "$b/classes" $(find "$app/java" "$b/gen" -name '*.java'); }
dex() {
  cp -r "$b/core/." "$b/classes/" &&
  java -jar "$dx_jar" --dex --min-sdk-version=23 --output="$b/classes.dex" "$b/classes" && [ -s "$b/classes.dex" ]
}

step "aapt2 links resources against android-23.jar" link
step "imprint-core compiles against android-23.jar (Java 8)" core &&
  step "app sources compile against android-23.jar + onnxruntime classes.jar" appsrc &&
  step "dx dexes the app and core classes (no lambdas)" dex
built=$?
[ "$built" = 0 ] || apk=0  # nothing to package

if [ "$apk" = 1 ]; then
  package() {
    cp "$b/base.apk" "$b/unsigned.apk" && (cd "$b" && aapt add unsigned.apk classes.dex) &&
    zipalign -f 4 "$b/unsigned.apk" "$b/aligned.apk" &&
    keytool -genkeypair -keystore "$b/debug.p12" -storetype PKCS12 -storepass android -keypass android \
      -alias debug -keyalg RSA -keysize 2048 -validity 365 -dname "CN=imprinting smoke test" &&
    apksigner sign --ks "$b/debug.p12" --ks-pass pass:android --out "$b/app.apk" "$b/aligned.apk"
  }
  verify() { apksigner verify --min-sdk-version 23 "$b/app.apk"; }
  badging() {
    aapt dump badging "$b/app.apk" >"$b/badging" && cat "$b/badging" &&
    grep -q "package: name='org.imprinting.demo'" "$b/badging" && grep -q "sdkVersion:'23'" "$b/badging" &&
    grep -q "launchable-activity: name='org.imprinting.demo.MainActivity'" "$b/badging" &&
    grep -q "uses-permission: name='android.permission.CAMERA'" "$b/badging"
  }
  step "smoke APK is packaged, aligned and signed" package
  step "apksigner verify accepts the APK" verify
  step "aapt dump badging shows the package, API 23, launcher and camera" badging
fi
echo "android-app: $passed passed, $failed failed"
[ "$failed" = 0 ]
