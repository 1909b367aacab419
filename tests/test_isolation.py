"""runtime/ must run on a device with numpy, one inference runtime and OpenCV: no torch, no tensorflow."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import imprinting.runtime

CHECK = r"""
import importlib, pkgutil, sys
import imprinting.runtime as rt
for m in pkgutil.iter_modules(rt.__path__):
    importlib.import_module("imprinting.runtime." + m.name)
import imprinting.runtime._onnx, imprinting.runtime._tflite
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "jax") or m.startswith("imprinting.export"))
print(",".join(bad))
"""


def test_runtime_imports_no_torch_tensorflow_or_export_side():
    modules = [m.name for m in pkgutil.iter_modules(imprinting.runtime.__path__)]
    assert {"classifier", "store", "bundle", "recognizer", "_onnx", "_tflite"} <= set(modules)
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"runtime pulled in: {res.stdout.strip()}"


def test_runtime_sources_have_no_forbidden_import_lines():
    root = Path(imprinting.runtime.__file__).parent
    for path in root.glob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            assert not s.startswith(("import torch", "from torch", "import tensorflow", "from tensorflow",
                                     "from imprinting.export", "import imprinting.export")), f"{path.name}: {s}"


def test_missing_backend_names_the_extra():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from imprinting.runtime._deps import require_onnxruntime\n"
        "try:\n    require_onnxruntime()\nexcept ImportError as e:\n    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'imprinting[onnx]'" in res.stdout
