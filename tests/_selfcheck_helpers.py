"""A tiny bundle with probes (no torch): the tiny ONNX extractor as an "int8" and an "fp32" file, its own fp32
outputs as the reference embeddings, and a fake engine that perturbs one file's embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imprinting.runtime.bundle import ExtractorEntry, Manifest, ProbeSet, file_sha256, write_manifest
from imprinting.runtime.extractor import ExtractorOptions, load_extractor
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized, normalize
from imprinting.runtime.probes import write_probes
from tiny import DIM, SIZE, pattern_image, write_tiny_onnx

SPEC = PreprocessSpec(input_size=SIZE, resize_size=36)


def write_probed_bundle(directory: Path, count: int = 6) -> Path:
    """A bundle with extractor_int8.onnx and extractor_fp32.onnx (the same tiny graph) and `count` probes made
    from pattern images, their references the graph's own fp32 outputs."""
    directory.mkdir(parents=True, exist_ok=True)
    fp32 = write_tiny_onnx(directory / "extractor_fp32.onnx")
    import onnx

    twin = onnx.load(str(fp32))
    twin.doc_string = "the same graph in other bytes, so that its digest (the self-check's key) differs"
    onnx.save(twin, str(directory / "extractor_int8.onnx"))
    crops = np.stack([centre_crop_resized(pattern_image(i % 4, i), SPEC) for i in range(count)])
    ex = load_extractor(fp32, ExtractorOptions())
    reference = ex.run(normalize(crops, SPEC, "NCHW"))
    ex.close()
    write_probes(directory / "probes.npz", crops, reference)
    entries = tuple(ExtractorEntry(file=f"extractor_{p}.onnx", format="onnx", precision=p, layout="NCHW",
                                   sha256=file_sha256(directory / f"extractor_{p}.onnx")) for p in ("int8", "fp32"))
    manifest = Manifest(name="tiny-probed", embedding_dim=DIM, scale=10.0, fingerprint="sha256:tiny", preprocess=SPEC,
                        extractors=entries,
                        probes=ProbeSet("probes.npz", count, file_sha256(directory / "probes.npz")))
    write_manifest(directory, manifest)
    return directory


class PerturbingEngine:
    """Wraps a real extractor; adds noise of `noise` times the output's norm when the file's name holds
    `target`, as an engine with broken kernels would. Counts its runs."""

    backend = "fake-engine"
    engine_version = "1.0"

    def __init__(self, inner, target: str, noise: float) -> None:
        self.inner, self.target, self.noise, self.runs = inner, target, noise, 0
        self.path, self.layout, self.input_size, self.embedding_dim, self.device = (
            inner.path, inner.layout, inner.input_size, inner.embedding_dim, inner.device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.runs += 1
        out = self.inner.run(batch)
        if self.target in self.path.name:
            rng = np.random.default_rng(0)
            out = out + self.noise * np.linalg.norm(out, axis=1, keepdims=True) * rng.normal(size=out.shape) / out.shape[1] ** 0.5
        return out.astype(np.float32)

    def close(self) -> None:
        self.inner.close()


def install_fake_engine(monkeypatch, target: str = "int8", noise: float = 0.5) -> list[PerturbingEngine]:
    """Make every load_extractor return a PerturbingEngine; returns the list of engines made."""
    import imprinting.runtime.extractor as extractor

    made: list[PerturbingEngine] = []
    real = extractor.load_extractor

    def fake(path, options=ExtractorOptions(), input_size=None):
        made.append(PerturbingEngine(real(path, options, input_size), target, noise))
        return made[-1]

    monkeypatch.setattr(extractor, "load_extractor", fake)
    return made
