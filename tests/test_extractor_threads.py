"""One extractor shared by several threads (the camera loop and the HTTP API's image teach, say) gives each
caller the embedding of its own image, on both backends, and closing waits for a run in progress."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from imprinting.runtime import ExtractorOptions, load_extractor


def _hammer(ex, inputs: np.ndarray, runs: int = 40) -> list[str]:
    """Two threads embed different images in turn; returns the mismatches against single-threaded runs."""
    want = [ex.run(x[None]) for x in inputs]
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for r in range(runs):
                k = (i + r) % len(inputs)
                got = ex.run(inputs[k][None])
                if not np.allclose(got, want[k], atol=1e-5):
                    errors.append(f"thread {i} run {r}: embedding of another image")
        except Exception as err:  # noqa: BLE001 - a crash in a thread is the failure being tested
            errors.append(f"thread {i}: {err!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_onnx_extractor_is_safe_to_share_between_threads(tiny_bundle):
    ex = load_extractor(tiny_bundle / "extractor_fp32.onnx", ExtractorOptions(threads=1))
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((4, 3, ex.input_size, ex.input_size)).astype(np.float32)
    assert _hammer(ex, inputs) == []
    ex.close()
    with pytest.raises(ValueError, match="closed"):
        ex.run(inputs[:1])


def test_tflite_extractor_is_safe_to_share_between_threads(tmp_path):
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    from _export_helpers import tiny_extractor

    from imprinting.export._tflite import convert_tflite_fp32

    path = tmp_path / "x.tflite"
    convert_tflite_fp32(tiny_extractor(dim=16), path, 64)
    ex = load_extractor(path, ExtractorOptions(threads=1))
    inputs = np.random.default_rng(1).standard_normal((4, 64, 64, 3)).astype(np.float32)
    assert _hammer(ex, inputs) == []
    ex.close()
    with pytest.raises(ValueError, match="closed"):
        ex.run(inputs[:1])
