from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import pattern_image, write_tiny_bundle  # noqa: E402


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
