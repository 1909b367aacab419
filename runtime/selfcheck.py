"""The self-check: a bundle file is verified on the device with the engine that will run it.

The first time a file runs with a given engine (and its version), provider or delegate, on a host with a
given int8 kernel family (host.py), its bundle's probes (probes.py) go through it and the mean cosine to the
PyTorch fp32 embeddings is compared with the bundle's threshold for the file's precision (0.999 fp32, 0.99
int8). The verdict is kept as a small JSON file in the user's cache directory, so later opens cost nothing;
a file that fails is skipped with one logged line and the next candidate of `Manifest.candidates` opened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .host import host_info
from .manifest import NPU_FORMATS

if TYPE_CHECKING:
    from .bundle import Bundle
    from .extractor import Extractor, ExtractorOptions
    from .manifest import ExtractorEntry

log = logging.getLogger(__name__)

CACHE_ENV = "IMPRINT_CHECK_CACHE"
_OFF = ("", "off", "none", "0")


@dataclass(frozen=True)
class Verdict:
    """One self-check: the key (file digest, engine and version, device, int8 kernel family), the figures on
    `probes` probes (mean and min cosine to PyTorch fp32), the bar, and the seconds the probes took."""

    file: str
    sha256: str
    precision: str
    engine: str
    engine_version: str
    device: str
    int8_kernels: str
    probes: int
    mean_cosine: float
    min_cosine: float
    threshold: float
    passed: bool
    seconds: float
    cached: bool = False

    def key(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("sha256", "engine", "engine_version", "device", "int8_kernels")}

    def describe(self) -> str:
        """One line: the file, what ran it, and the figure against the bar."""
        return (f"{self.file} with {self.engine} {self.engine_version} ({self.device}) on {self.int8_kernels}: mean "
                f"cosine {self.mean_cosine:.4f} (min {self.min_cosine:.4f}) to PyTorch fp32 on {self.probes} probes, "
                f"{'>=' if self.passed else '<'} {self.threshold}")


def cache_dir(option: str | None = None) -> Path | None:
    """Where verdicts are kept: `option`, else $IMPRINT_CHECK_CACHE, else $XDG_CACHE_HOME/imprinting/selfcheck
    or ~/.cache/imprinting/selfcheck; None ("off") when caching is turned off."""
    value = option if option is not None else os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imprinting" / "selfcheck"


def run_key(entry: "ExtractorEntry", ex: "Extractor", probes_sha256: str) -> dict[str, str]:
    """The self-check's key for a loaded file: what could change its numbers."""
    return {
        "sha256": entry.sha256 or _digest(ex.path),
        "probes_sha256": probes_sha256,
        "engine": str(getattr(ex, "backend", type(ex).__name__)),
        "engine_version": str(getattr(ex, "engine_version", "unknown")),
        "device": str(getattr(ex, "device", "cpu")),
        "int8_kernels": host_info()["int8_kernels"],
    }


def _digest(path: Path) -> str:
    from .bundle import file_sha256

    return file_sha256(path)


def _cache_path(directory: Path, key: dict[str, str]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return directory / f"{name}.json"


def _read_cached(directory: Path | None, key: dict[str, str]) -> Verdict | None:
    if directory is None:
        return None
    path = _cache_path(directory, key)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("key") != key:
            return None
        return Verdict(**{**d["verdict"], "cached": True})
    except (OSError, ValueError, TypeError, KeyError):  # absent, or written by another version: check again
        return None


def _write_cached(directory: Path | None, key: dict[str, str], verdict: Verdict) -> None:
    if directory is None:
        return
    from .atomic import atomic_write_bytes

    data = {"key": key, "verdict": {k: v for k, v in asdict(verdict).items() if k != "cached"},
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(_cache_path(directory, key), json.dumps(data, indent=1).encode() + b"\n")
    except OSError as err:  # a read-only home: the check simply runs again next time
        log.debug("cannot cache the self-check verdict in %s: %s", directory, err)


def probe_cosines(ex: "Extractor", bundle: "Bundle", crops: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine per probe, float64 (N,), between the file's embeddings of uint8 crops (N, S, S, 3), run one at a
    time, and the reference float32 (N, D)."""
    from .preprocess import normalize

    x = normalize(crops, bundle.manifest.preprocess, ex.layout)
    # One probe at a time, as frames arrive: a batch of 8 would grow the engine's memory arena for good.
    out = np.concatenate([np.asarray(ex.run(x[i : i + 1]), np.float64) for i in range(len(x))])
    ref = np.asarray(reference, np.float64)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    cos = np.sum(out * ref, axis=1)
    return np.where(np.isfinite(cos), cos, -1.0)


def check(bundle: "Bundle", entry: "ExtractorEntry", ex: "Extractor", cache: str | None = None,
          use_cache: bool = True) -> Verdict | None:
    """The verdict for a loaded file on this host: cached, or measured now (and cached); None when the bundle
    carries no probes (made before they existed)."""
    probes = bundle.manifest.probes
    if probes is None:
        return None
    directory = cache_dir(cache)
    key = run_key(entry, ex, probes.sha256)
    threshold = probes.threshold(entry.precision)
    cached = _read_cached(directory, key) if use_cache else None
    if cached is not None:  # the bar is the bundle's: a cached figure is judged against it anew
        return replace(cached, file=entry.file, precision=entry.precision, threshold=threshold,
                       passed=cached.mean_cosine >= threshold)
    crops, reference = bundle.probes()
    t0 = time.perf_counter()
    cos = probe_cosines(ex, bundle, crops, reference)
    seconds = time.perf_counter() - t0
    mean = float(cos.mean())
    verdict = Verdict(entry.file, key["sha256"], entry.precision, key["engine"], key["engine_version"], key["device"],
                      key["int8_kernels"], len(cos), round(mean, 6), round(float(cos.min()), 6), threshold,
                      mean >= threshold, round(seconds, 4))
    log.info("self-check %s (%.0f ms)", verdict.describe(), seconds * 1e3)
    _write_cached(directory, key, verdict)
    return verdict


def open_checked(bundle: "Bundle", format: str | None, precision: str | None,
                 options: "ExtractorOptions") -> "Extractor":
    """Open the first of the bundle's candidate files that passes its self-check (see Bundle.open_extractor).
    When every candidate fails, the one closest to PyTorch is opened with a warning (strict: ValueError)."""
    failed: list[tuple[Verdict, "ExtractorEntry"]] = []
    unopened: list[Exception] = []
    for entry in bundle.manifest.candidates(format, precision):
        ex = _open(bundle, entry, options, unopened)
        if ex is None:
            continue
        try:
            verdict = None if options.self_check == "off" else check(bundle, entry, ex, options.check_cache)
        except BaseException:
            ex.close()
            raise
        if verdict is None or verdict.passed:
            return _mark(ex, entry, verdict)
        ex.close()
        if options.self_check == "strict":
            raise ValueError(f"self-check failed: {verdict.describe()}; run another file (--format/--precision) or "
                             "drop --strict-check to fall back to the next file automatically")
        failed.append((verdict, entry))
        log.warning("self-check failed, skipping %s", verdict.describe())
    if not failed:  # nothing here can run any candidate: say why the first could not
        raise unopened[0]
    verdict, entry = max(failed, key=lambda f: f[0].mean_cosine)
    log.warning("no %s file of bundle %s passed its self-check here; running %s, the closest to PyTorch "
                "(mean cosine %.4f)", _what(format, precision), bundle.path, entry.file, verdict.mean_cosine)
    return _mark(bundle.load_entry(entry, options), entry, verdict)


def _open(bundle: "Bundle", entry: "ExtractorEntry", options: "ExtractorOptions",
          unopened: list[Exception]) -> "Extractor | None":
    """Load one candidate, or None (the reason appended to `unopened`) when its engine is not installed here
    (a TFLite file on an ONNX-only install, an NPU file off its board) or an NPU file does not load (another
    SoC, no driver): the next candidate is tried, as after a failed self-check. Other errors (a damaged file)
    propagate."""
    try:
        return bundle.load_entry(entry, options)
    except ImportError as err:
        log.info("skipping %s: %s", entry.file, err)
        unopened.append(err)
    except ValueError as err:
        if entry.format not in NPU_FORMATS:
            raise
        log.warning("skipping %s: %s", entry.file, err)
        unopened.append(err)
    return None


def _what(format: str | None, precision: str | None) -> str:
    return f"{format or 'any'}/{precision or 'any'}"


def _mark(ex: "Extractor", entry: "ExtractorEntry", verdict: Verdict | None) -> "Extractor":
    """Record on the extractor which bundle file it runs and its self-check verdict (None: not checked)."""
    ex.entry = entry  # type: ignore[attr-defined]
    ex.self_check = verdict  # type: ignore[attr-defined]
    return ex


def verdict_dict(verdict: Verdict | None) -> dict[str, Any] | None:
    return None if verdict is None else asdict(verdict)
