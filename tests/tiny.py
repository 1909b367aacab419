"""A tiny ONNX extractor and bundle built in the test session (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imprinting.runtime.bundle import ExtractorEntry, Manifest, file_sha256, write_manifest
from imprinting.runtime.preprocess import PreprocessSpec

SIZE = 32
DIM = 16


def write_tiny_onnx(path: Path, dim: int = DIM, size: int = SIZE, seed: int = 0) -> Path:
    """Conv(3->24, 4x4/4) -> ReLU -> global average pool -> linear to `dim`; NCHW input, dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (24, 3, 4, 4)).astype(np.float32)
    b = rng.normal(0, 0.1, (24,)).astype(np.float32)
    proj = rng.normal(0, 0.5, (24, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[4, 4]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "proj"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(proj, "proj")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_bundle(directory: Path, dim: int = DIM, seed: int = 0, fingerprint: str | None = None) -> Path:
    """A bundle directory with one fp32 ONNX extractor and no base classes."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = write_tiny_onnx(directory / "extractor_fp32.onnx", dim=dim, seed=seed)
    sha = file_sha256(onnx_path)
    manifest = Manifest(
        name="tiny-test",
        embedding_dim=dim,
        scale=10.0,
        fingerprint=fingerprint or f"sha256:{sha}",
        preprocess=PreprocessSpec(input_size=SIZE, resize_size=36),
        extractors=(ExtractorEntry(file=onnx_path.name, format="onnx", precision="fp32", layout="NCHW", sha256=sha, normalized=False),),
    )
    write_manifest(directory, manifest)
    return directory


def pattern_image(kind: int, seed: int, size: int = 64) -> np.ndarray:
    """Distinct synthetic RGB uint8 images: kind picks colour and texture, seed adds jitter and noise."""
    rng = np.random.default_rng(1000 * kind + seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = [
        (np.sin(xx / 3) > 0, (230, 40, 40)),         # red vertical stripes
        (np.sin(yy / 5) > 0, (40, 200, 60)),          # green horizontal stripes
        ((xx // 8 + yy // 8) % 2 == 0, (40, 60, 230)),  # blue checkerboard
        ((xx - 32) ** 2 + (yy - 32) ** 2 < 300, (240, 220, 30)),  # yellow disc
    ][kind]
    mask, colour = base
    img = np.where(mask[..., None], np.array(colour, np.float32), np.float32(25))
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 8, img.shape)
    shift = rng.integers(-3, 4, size=2)
    img = np.roll(img, tuple(shift), axis=(0, 1))
    return np.clip(img, 0, 255).astype(np.uint8)
