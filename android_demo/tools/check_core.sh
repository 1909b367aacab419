#!/usr/bin/env bash
# Compile imprint-core for Java 8 with javac and run its JUnit 4 tests against golden vectors, no Gradle.
#   android_demo/tools/check_core.sh GOLDEN_DIR [OUT_DIR]
# GOLDEN_DIR comes from make_golden.py; the tests write Java-made stores into OUT_DIR for Python to read.
# Exit 77 with "SKIP: reason" when a tool is missing (install with scripts/install_android_check_deps.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
golden="${1:?usage: check_core.sh GOLDEN_DIR [OUT_DIR]}"
out="${2:-}"
skip() { echo "SKIP: $*"; exit 77; }
command -v javac >/dev/null || skip "javac not found (apt-get install default-jdk-headless)"
junit="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
hamcrest="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
[ -f "$junit" ] || skip "JUnit 4 not found at $junit (apt-get install junit4)"
[ -f "$hamcrest" ] || skip "hamcrest not found at $hamcrest (apt-get install junit4)"

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp="$junit:$hamcrest"
# --release 8 checks both the syntax and the class library against Java 8, which Android API 23 needs.
javac --release 8 -Xlint:all -Werror -encoding UTF-8 -d "$build/main" \
  $(find "$here/imprint-core/src/main/java" -name '*.java')
javac --release 8 -encoding UTF-8 -d "$build/test" -cp "$build/main:$cp" \
  $(find "$here/imprint-core/src/test/java" -name '*.java')
props=(-Dgolden.dir="$golden")
[ -n "$out" ] && props+=(-Dgolden.out="$out")
java "${props[@]}" -cp "$build/main:$build/test:$cp" org.imprinting.core.RunTests
