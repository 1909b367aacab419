"""Hostile class stores: what a broken or malicious writer could send, each with the reason it must be refused.

`hostile_stores(dim, fingerprint)` returns {name: (file bytes, a regex of the one-line refusal)}. Each is a
valid zip of .npy members (so it gets past the container checks) whose content breaks one invariant of
docs/formats.md. Tests feed every one through every door: read_store, `imprint classes import/merge`, the
Recognizer's merge, and the camera's `POST /store/merge`.
"""

from __future__ import annotations

import io
import json

import numpy as np

from imprinting.runtime.invariants import content_id


def _npz(meta: dict | bytes, **arrays: np.ndarray) -> bytes:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta, allow_nan=True).encode()
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(raw, np.uint8), **arrays)
    return buf.getvalue()


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    e = rng.standard_normal((n, dim)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def good_store(dim: int, fingerprint: str, labels=("jay", "wren"), scale: float = 10.0, templates: int = 1,
               seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """A valid store's (meta, arrays) with 2 shots per class, to break one thing at a time."""
    shots = _unit(np.random.default_rng(seed), 2 * len(labels), dim)
    cls = np.repeat(np.arange(len(labels)), 2).astype(np.int64)
    sums = np.stack([shots[cls == k].sum(0) for k in range(len(labels))]).astype(np.float32)
    meta = {"format": "imprinting-class-store", "format_version": 1, "labels": list(labels), "scale": scale,
            "embedding_dim": dim, "extractor_fingerprint": fingerprint, "templates_per_class": templates,
            "shot_ids": [content_id(s) for s in shots]}
    return meta, {"sums": sums, "counts": np.full(len(labels), 2, np.int64), "shots": shots, "shot_class": cls}


def hostile_stores(dim: int, fingerprint: str) -> dict[str, tuple[bytes, str]]:
    """Every hostile store of issue 25 (and a few more), with the regex its refusal matches."""
    out: dict[str, tuple[bytes, str]] = {}

    def case(name: str, why: str, meta_changes: dict | None = None, **arrays: np.ndarray) -> None:
        meta, good = good_store(dim, fingerprint)
        meta.update(meta_changes or {})
        out[name] = (_npz(meta, **{**good, **arrays}), why)

    meta, good = good_store(dim, fingerprint)
    deep = b'{"format": "imprinting-class-store", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out["meta nested 100k levels"] = (_npz(deep, **good), "nested too deeply")
    text = json.dumps(meta).replace('"scale": 10.0', '"scale": Infinity')
    out["Infinity in the metadata"] = (_npz(text.encode(), **good), "holds Infinity")
    text = json.dumps(meta).replace('"scale": 10.0', '"scale": NaN')
    out["NaN in the metadata"] = (_npz(text.encode(), **good), "holds NaN")
    case("count 2^63-1", r"outside \[1, 2\^40\]", counts=np.array([2**63 - 1, 2], np.int64))
    case("uint64 count 2^64-1", r"outside \[1, 2\^40\]", counts=np.array([2**64 - 1, 2], np.uint64))
    case("count 0", r"outside \[1, 2\^40\]", counts=np.array([0, 2], np.int64))
    case("count above 2^40", r"outside \[1, 2\^40\]", counts=np.array([2**40 + 1, 2], np.int64))
    case("float counts", "counts must be integers", counts=np.array([2.0, 2.0]))
    sums = good["sums"].copy()
    sums[0] = 3e38
    case("sums of 3e38", "sum of length", sums=sums)
    sums = good["sums"].copy()
    sums[0, 0] = np.inf
    case("an infinite sum", "NaN or infinity", sums=sums)
    shots = good["shots"].copy()
    shots[0] *= 1e30
    case("a shot of norm 1e30", "not a unit row", shots=shots)
    shots = good["shots"].copy()
    shots[0, 0] = np.nan
    case("a NaN shot", "NaN or infinity", shots=shots)
    case("scale 1e300", "scale must be", {"scale": 1e300})
    case("negative scale", "scale must be", {"scale": -1.0})
    case("templates 10**30", "templates_per_class must be", {"templates_per_class": 10**30})
    case("templates as text", "templates_per_class must be", {"templates_per_class": "3"})
    case("labels differing by a space", "not in normal form", {"labels": ["jay", "jay "]})
    case("a decomposed (non-NFC) label", "not in normal form", {"labels": ["jay", "caf" + "e\u0301"]})
    case("duplicate labels", "appears twice", {"labels": ["jay", "jay"]})
    case("a label with an invisible character", "invisible", {"labels": ["jay", "wr\u200ben"]})
    sums = good["sums"].copy()
    sums[0] = good["shots"][0]
    case("more shots than the count", "keeps 2 shots but counts 1", counts=np.array([1, 2], np.int64), sums=sums)
    sums = good["sums"].copy()
    sums[0] = -sums[0]
    case("shots that do not add up to the sum", "do not add up", sums=sums)
    case("a shot id list of the wrong length", "one id .* per shot", {"shot_ids": ["a"]})
    case("the same shot id twice in a class", "holds shot a twice", {"shot_ids": ["a", "a", "b", "c"]})
    case("a shot of a missing class", "does not exist", shot_class=np.array([0, 0, 1, 5], np.int64))
    case("a fingerprint that is a number", "bad metadata field", {"extractor_fingerprint": 7})
    return out
