"""The class store file: one portable `.npz` (no pickle) that Python, Java and JavaScript can read.

Format version 1, an uncompressed zip of `.npy` arrays (written by `np.savez`, read with
`allow_pickle=False`):

    meta.npy    uint8 (B,)   UTF-8 JSON: {"format": "imprinting-class-store", "format_version": 1,
                             "labels": [...K strings], "scale": s, "embedding_dim": D,
                             "extractor_fingerprint": "...", "templates_per_class": T,
                             "shot_ids": [N ids, one per row of shots]}
                             (shot_ids: a shot's identity, the photo's content digest when known, else the
                             content_id of its row; null or absent entries are filled with content ids on
                             read. Stores before shot ids carried "shot_digests" {label: [digests]}: still
                             accepted, not written, not used: their shots get content ids)
    sums.npy    float32 (K, D)  per-class sum of unit embeddings
    counts.npy  int64 (K,)      shots per class (>= 1)
    shots.npy   float32 (N, D)  optional: every stored shot (kept for several templates per class)
    shot_class.npy int64 (N,)   optional: the class index of each shot
    refine_u.npy, refine_v.npy float32 (D, r), refine_rows.npy float32 (K, D), refine_cos.npy float32 (2,)
                                optional, together: a refinement (refine.py) of exactly these classes and
                                its cosine calibration (scale, shift); readers that do not know it ignore
                                it and use the imprinted rows

Labels live in JSON, not a numpy unicode array, so that other languages need no UTF-32 decoder.
Saves are atomic (temp file in the same directory, fsync, rename, fsync of the directory): a killed
writer leaves the previous file intact.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .invariants import check_store_data, content_id
from .refine import EmbeddingMap, Refinement

STORE_FORMAT = "imprinting-class-store"
STORE_FORMAT_VERSION = 1
MAX_STORE_BYTES = 256 * 2**20  # an upload larger than this is refused before it is parsed


@dataclass(frozen=True)
class StoreData:
    """The arrays and facts of a class store. sums float32 (K, D), counts int64 (K,)."""

    labels: tuple[str, ...]
    sums: np.ndarray
    counts: np.ndarray
    scale: float
    extractor_fingerprint: str
    templates_per_class: int = 1
    shots: np.ndarray | None = None
    shot_class: np.ndarray | None = None
    # One id per shot row: the photo's content digest (images.load_image_digest) or invariants.content_id.
    shot_ids: tuple[str, ...] | None = None
    refinement: Refinement | None = None

    @property
    def embedding_dim(self) -> int:
        return int(self.sums.shape[1])


def write_store(path: str | os.PathLike[str], data: StoreData) -> None:
    """Validate `data` and save it atomically to `path` (an `.npz`)."""
    check_store_data(data, f"class store {path} would be invalid")
    arrays = _arrays(data)
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def _arrays(data: StoreData) -> dict[str, np.ndarray]:
    meta = {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "labels": list(data.labels),
        "scale": float(data.scale),
        "embedding_dim": data.embedding_dim,
        "extractor_fingerprint": data.extractor_fingerprint,
        "templates_per_class": int(data.templates_per_class),
    }
    if data.shots is not None:
        meta["shot_ids"] = list(data.shot_ids)
    arrays = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
        "sums": np.ascontiguousarray(data.sums, dtype=np.float32),
        "counts": np.ascontiguousarray(data.counts, dtype=np.int64),
    }
    if data.shots is not None:
        arrays["shots"] = np.ascontiguousarray(data.shots, dtype=np.float32)
        arrays["shot_class"] = np.ascontiguousarray(data.shot_class, dtype=np.int64)
    if data.refinement is not None:
        arrays["refine_u"] = np.ascontiguousarray(data.refinement.map.u, dtype=np.float32)
        arrays["refine_v"] = np.ascontiguousarray(data.refinement.map.v, dtype=np.float32)
        arrays["refine_rows"] = np.ascontiguousarray(data.refinement.rows, dtype=np.float32)
        arrays["refine_cos"] = np.array([data.refinement.cos_scale, data.refinement.cos_shift], np.float32)
    return arrays


def store_bytes(data: StoreData) -> bytes:
    """The class-store file of `data` as bytes (to send it somewhere), validated as write_store does."""
    buf = io.BytesIO()
    check_store_data(data, "class store to send would be invalid")
    np.savez(buf, **_arrays(data))
    return buf.getvalue()


def read_store(
    path: str | os.PathLike[str] | bytes,
    *,
    expected_fingerprint: str | None = None,
    expected_dim: int | None = None,
) -> StoreData:
    """Load and validate a class store: a file, or its bytes (e.g. an upload). Any problem raises ValueError
    with a one-line reason."""
    if isinstance(path, (bytes, bytearray)):
        if len(path) > MAX_STORE_BYTES:
            raise ValueError(f"a class store of {len(path) >> 20} MB is refused (at most {MAX_STORE_BYTES >> 20} MB)")
        src, path = io.BytesIO(path), "(uploaded)"
    else:
        path = src = Path(path)
        if not path.is_file():
            raise ValueError(f"class store {path} does not exist or is not a regular file")
    arrays = _load_members(src, str(path))
    data = _store_data(_meta(arrays["meta"], path), arrays, path)
    check_store_data(data, f"class store {path} is corrupt")
    if expected_fingerprint is not None and data.extractor_fingerprint != expected_fingerprint:
        raise ValueError(
            f"class store {path} was made with extractor {data.extractor_fingerprint[:16]} but this model is "
            f"{expected_fingerprint[:16]}; re-teach the classes with this model or use the store's own bundle"
        )
    if expected_dim is not None and data.embedding_dim != expected_dim:
        raise ValueError(
            f"class store {path} holds {data.embedding_dim}-d embeddings but this model makes {expected_dim}-d ones"
        )
    return data


# Members a store may hold; anything else in the zip is never read.
_MEMBERS = ("meta", "sums", "counts", "shots", "shot_class", "refine_u", "refine_v", "refine_rows", "refine_cos")
# An array may not inflate to more than this many times its compressed size (np.savez stores, ratio 1).
_MAX_INFLATION = 64


def _load_members(src: Path | io.BytesIO, path: str) -> dict[str, np.ndarray]:
    """The allow-listed arrays of a store zip, each checked before it is read: its header's dtype and
    shape must fit the member's real size, so a forged header or a zip bomb cannot make us allocate."""
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(src) as z:
            infos = {i.filename[:-4]: i for i in z.infolist() if i.filename.endswith(".npy")}
            missing = {"meta", "sums", "counts"} - set(infos)
            if missing:
                raise ValueError(f"class store {path} is corrupt: missing {sorted(missing)}")
            for name, info in infos.items():
                if name not in _MEMBERS:
                    continue
                if info.file_size > _MAX_INFLATION * max(info.compress_size, 1) + 4096:
                    raise ValueError(f"class store {path} is corrupt: {name} inflates {info.file_size} bytes from "
                                     f"{info.compress_size}")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                    if version not in readers:
                        raise ValueError(f"class store {path} is corrupt: {name} has npy version {version}")
                    shape, fortran, dtype = readers[version](f, max_header_size=10000)
                    if dtype.hasobject or dtype.kind not in "biuf":
                        raise ValueError(f"class store {path} is corrupt: {name} has dtype {dtype} (objects are "
                                         "never unpickled)")
                    need = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
                    if need > info.file_size:
                        raise ValueError(f"class store {path} is corrupt: {name} claims shape {shape} "
                                         f"({need} bytes) in a {info.file_size}-byte member")
                    data = np.frombuffer(f.read(need), dtype=dtype)
                    if data.size != int(np.prod(shape)):
                        raise ValueError(f"class store {path} is truncated: {name} is short")
                    out[name] = data.reshape(shape, order="F" if fortran else "C").copy()
    except ValueError as err:
        if str(err).startswith("class store"):
            raise
        raise ValueError(f"class store {path} is truncated or corrupt ({err})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, RuntimeError) as err:
        raise ValueError(f"class store {path} is truncated or corrupt ({type(err).__name__}: {err})") from None
    return out


def _digests(value: object, path: Path) -> dict[str, tuple[str, ...]]:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) and 0 < len(x) <= 64 for x in v)
        for k, v in value.items())
    if not ok:
        raise ValueError(f"class store {path} is corrupt: shot_digests must map labels to lists of digests")
    return {k: tuple(v) for k, v in value.items()}


def _store_data(meta: dict, arrays: dict[str, np.ndarray], path: object) -> StoreData:
    """StoreData from the metadata and arrays, with types checked (invariants.py checks the numbers)."""
    version = meta.get("format_version")
    if type(version) is not int or version != STORE_FORMAT_VERSION:  # true == 1 in Python, not in the format
        raise ValueError(
            f"class store {path} has format version {version}; this runtime reads version "
            f"{STORE_FORMAT_VERSION} (upgrade imprinting to read it)"
        )
    labels = meta.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"class store {path} is corrupt: labels must be a list of strings")
    _digests(meta.get("shot_digests", {}), path)  # stores before shot ids: checked, not used
    counts = arrays["counts"]
    if counts.dtype.kind not in "iu":
        raise ValueError(f"class store {path} is corrupt: counts must be integers, got {counts.dtype}")
    if counts.size and counts.max() > np.iinfo(np.int64).max // 2:  # uint64 beyond int64, or near overflow
        raise ValueError(f"class store {path} is corrupt: a class count is outside [1, 2^40]")
    try:
        shots, scale = arrays.get("shots"), meta["scale"]
        data = StoreData(
            labels=tuple(labels),
            sums=arrays["sums"],
            counts=counts.astype(np.int64),
            scale=float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else scale,
            extractor_fingerprint=_text(meta["extractor_fingerprint"]),
            templates_per_class=meta.get("templates_per_class", 1),
            shots=shots,
            shot_class=arrays.get("shot_class"),
            shot_ids=_shot_ids(meta.get("shot_ids"), shots, path),
            refinement=_refinement(arrays, path),
        )
        dim = meta["embedding_dim"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"class store {path} is corrupt: bad metadata field {err}") from None
    if data.sums.ndim != 2 or data.sums.shape[1] != dim:
        raise ValueError(f"class store {path} is corrupt: sums shape {data.sums.shape} but embedding_dim {dim!r}")
    return data


def _meta(raw: np.ndarray, path: object) -> dict:
    """The store's JSON metadata; NaN/Infinity constants and absurd nesting are refused, not parsed."""
    def no_constant(name: str) -> None:
        raise ValueError(f"class store {path} is corrupt: metadata holds {name}")

    try:
        meta = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"class store {path} is corrupt: unreadable metadata ({err})") from None
    except RecursionError:
        raise ValueError(f"class store {path} is corrupt: metadata nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise ValueError(f"{path} is not an imprinting class store")
    return meta


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _shot_ids(value: object, shots: np.ndarray | None, path: object) -> tuple[str, ...] | None:
    """Each shot's id: the file's where given, else (stores before ids, or null entries) its content id."""
    if shots is None:
        return None
    n = shots.shape[0] if shots.ndim == 2 else -1
    if value is None:
        value = [None] * max(n, 0)
    if not isinstance(value, list) or len(value) != n or not all(
            x is None or (isinstance(x, str) and 0 < len(x) <= 64) for x in value):
        raise ValueError(f"class store {path} is corrupt: shot_ids must list one id (1-64 characters) per shot")
    return tuple(x if x is not None else content_id(shots[i]) for i, x in enumerate(value))


def _refinement(arrays: dict[str, np.ndarray], path: object) -> Refinement | None:
    names = ("refine_u", "refine_v", "refine_rows", "refine_cos")
    present = [n in arrays for n in names]
    if not any(present):
        return None
    if not all(present) or arrays["refine_cos"].shape != (2,):
        raise ValueError(f"class store {path} is corrupt: refine_u, refine_v, refine_rows and refine_cos (2,) must "
                         "come together")
    u, v, w, cos = (np.asarray(arrays[n], np.float32) for n in names)
    return Refinement(EmbeddingMap(u, v), w, float(cos[0]), float(cos[1]))
