"""Offline compile check of the Android app (android_demo/tools/check_app.sh), no Gradle needed.

aapt2 links the resources against the vendored android-23.jar, javac compiles imprint-core and every app
source for Java 8 against API 23 and ONNX Runtime's classes.jar, dx dexes the classes (rejecting lambdas), and
a smoke APK is packaged, signed and checked with apksigner verify and aapt dump badging. Skips with the reason
when the vendored files (../shared/vendor) or a tool are absent.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "android_demo" / "tools" / "check_app.sh"


def test_app_compiles_dexes_and_packages() -> None:
    p = subprocess.run(["bash", str(SCRIPT), "--apk"], capture_output=True, text=True, timeout=300)
    text = p.stdout + p.stderr
    if p.returncode == 77:
        pytest.skip(text.strip().splitlines()[-1])
    print(text)
    m = re.search(r"^android-app: (\d+) passed, (\d+) failed$", text, re.M)
    assert m, text
    assert p.returncode == 0 and m.groups() == ("7", "0"), text
