"""runtime/ must run on a device with numpy, one inference runtime and OpenCV: no torch, no tensorflow."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import imprinting
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


# The layers of contract 5 and 8: front ends reach images, the extractor and the classes only through the
# Recognizer (and ClassSet for class edits), never through the pieces behind it.
FRONT_ENDS = ("cli.py", "camera_cli.py", "loop.py", "api.py", "folders.py", "info_cli.py")
BEHIND = {"classifier", "images", "preprocess", "extractor", "embedder", "_onnx", "_tflite"}


def _imported_modules(path: Path) -> set[str]:
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # from .x import y / from . import x
                out |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
            elif mod.startswith("imprinting.runtime."):
                out.add(mod.split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("imprinting.runtime.")}
    return out


def test_front_ends_import_nothing_behind_the_recognizer():
    root = Path(imprinting.runtime.__file__).parent
    paths = [root / f for f in FRONT_ENDS] + [root.parent / "imprinting" / "demo.py"]
    for path in paths:
        if not path.exists():  # an editable install maps imprinting/ beside runtime/
            path = Path(imprinting.__file__).parent / path.name
        bad = _imported_modules(path) & BEHIND
        assert not bad, f"{path.name} imports {sorted(bad)} directly; go through the Recognizer"


def test_runtime_files_and_functions_stay_small():
    import ast

    root = Path(imprinting.runtime.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        assert text.count("\n") <= 300, f"{path.name} has {text.count(chr(10))} lines (at most 300: split it)"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= 60, f"{path.name}: {node.name} has {n} lines (at most 60)"
