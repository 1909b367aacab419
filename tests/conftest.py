from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402
from tiny import pattern_image, write_tiny_bundle  # noqa: E402

# A runtime-only install (what a device gets: no onnx package) cannot build the tiny ONNX models; there,
# IMPRINT_TINY_ONNX names a folder of them prebuilt by tiny.py elsewhere (scripts/ci_runtime_only.sh), as
# tiny_d{dim}_s{size}_seed{seed}.onnx. A model not there skips the test that wants it, with the reason.
_PREBUILT = os.environ.get("IMPRINT_TINY_ONNX")


def _have_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _prebuilt_tiny_onnx(path: Path, dim: int = tiny.DIM, size: int = tiny.SIZE, seed: int = 0) -> Path:
    pytest.importorskip("onnxruntime", reason="the tiny test model is an ONNX file; this install has no onnxruntime")
    src = Path(_PREBUILT) / f"tiny_d{dim}_s{size}_seed{seed}.onnx"
    if not src.is_file():
        pytest.skip(f"the onnx package is not installed and {src} was not prebuilt")
    shutil.copyfile(src, path)
    return Path(path)


if _PREBUILT and not _have_onnx():
    tiny.write_tiny_onnx = _prebuilt_tiny_onnx


@pytest.fixture(scope="session", autouse=True)
def _self_check_cache(tmp_path_factory: pytest.TempPathFactory):
    """Self-check verdicts go to a temporary directory, never the user's ~/.cache (runtime/selfcheck.py)."""
    import os

    old = os.environ.get("IMPRINT_CHECK_CACHE")
    os.environ["IMPRINT_CHECK_CACHE"] = str(tmp_path_factory.mktemp("selfcheck-cache"))
    yield
    if old is None:
        os.environ.pop("IMPRINT_CHECK_CACHE", None)
    else:
        os.environ["IMPRINT_CHECK_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if tiny.write_tiny_onnx is not _prebuilt_tiny_onnx:
        pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Four classes of synthetic PNG files, 4 images each: {"red": [...], ...}."""
    cv2 = pytest.importorskip("cv2")
    root = tmp_path_factory.mktemp("images")
    out: dict[str, list[Path]] = {}
    for kind, name in enumerate(["red", "green", "blue", "yellow"]):
        out[name] = []
        for seed in range(4):
            p = root / f"{name}_{seed}.png"
            cv2.imwrite(str(p), cv2.cvtColor(pattern_image(kind, seed), cv2.COLOR_RGB2BGR))
            out[name].append(p)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The browser end-to-end fixture runs android_demo/tools/make_golden.py in its own process, which builds its
    # tiny model with the onnx package: on a runtime-only install that is a skip, not an error.
    if "e2e" in getattr(item, "fixturenames", ()) and not _have_onnx():
        pytest.skip("the golden files (android_demo/tools/make_golden.py) need the onnx package, a dev extra")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # On an install with one backend (imprinting[onnx] or [tflite]) a test that reaches the other one gets the
    # runtime's own ImportError ("X is not installed; install it with: pip install 'imprinting[extra]'"): it
    # needed what this install does not have, so it is a skip with that reason, not a failure.
    outcome = yield
    report = outcome.get_result()
    err = call.excinfo
    if report.failed and err is not None and err.errisinstance(ImportError) and \
            " is not installed; install it with: pip install 'imprinting[" in str(err.value) and \
            not isinstance(err.value, ModuleNotFoundError):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {err.value}")
