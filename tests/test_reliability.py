"""Property-based checks of everything the runtime reads from outside: any bytes given as a class store, a
manifest or an image either load or raise the documented ValueError, never another exception, and never
allocate more than a small bound on the way."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from imprinting.runtime import ClassSet, decode_image, load_bundle, read_store, write_store  # noqa: E402

MEMORY_BOUND = 64 << 20  # bytes any single load may allocate at its peak
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_store_bytes(tmp: Path) -> bytes:
    classes = ClassSet(8, 10.0, "fp", templates_per_class=2)
    rng = np.random.default_rng(0)
    for label in ("cat", "dog", "mug"):
        classes.learn(label, rng.standard_normal((2, 8)).astype(np.float32))
    write_store(tmp / "valid.npz", classes.to_store_data())
    return (tmp / "valid.npz").read_bytes()


def _bounded(fn):
    """Run fn(); returns (result or the exception, peak bytes allocated)."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - the type is what the caller checks
            out = err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


@pytest.fixture(scope="module")
def valid_store(tmp_path_factory) -> bytes:
    return _valid_store_bytes(tmp_path_factory.mktemp("store"))


def _check_store(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    out, peak = _bounded(lambda: read_store(path))
    assert peak < MEMORY_BOUND, peak
    assert not isinstance(out, Exception) or isinstance(out, ValueError), repr(out)


@SETTINGS
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=8))
def test_any_damage_to_a_store_loads_or_raises_valueerror(valid_store, tmp_path, cut, flips):
    data = bytearray(valid_store[: cut % (len(valid_store) + 1)] if cut % 3 == 0 else valid_store)
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    _check_store(bytes(data), tmp_path / "s.npz")


@SETTINGS
@given(shape=st.lists(st.integers(0, 2**40), min_size=1, max_size=3), member=st.sampled_from(["sums", "counts", "meta"]),
       descr=st.sampled_from(["<f4", "<i8", "|u1", "<f8", "|O", "<U5"]))
def test_forged_array_headers_never_allocate(valid_store, tmp_path, shape, member, descr):
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid_store)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == f"{member}.npy":
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
                body = head.getvalue() + body[128:]
            dst.writestr(info.filename, body)
    _check_store(buf.getvalue(), tmp_path / "s.npz")


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_never_a_store_and_never_an_image(tmp_path, data):
    _check_store(data, tmp_path / "s.npz")
    out, peak = _bounded(lambda: decode_image(data))
    assert peak < MEMORY_BOUND and (not isinstance(out, Exception) or isinstance(out, ValueError)), repr(out)


_JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=10)


@SETTINGS
@given(key=st.sampled_from(["name", "embedding_dim", "scale", "fingerprint", "preprocess", "extractors", "base_classes",
                            "shot_offsets", "calibration", "host", "rejected", "format_version"]), value=_JSON)
def test_any_manifest_field_value_loads_or_raises_valueerror(tiny_bundle, tmp_path, key, value):
    copy = tmp_path / "b"
    if not copy.exists():
        shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))

    def load():
        b = load_bundle(copy)
        b.base_classes()
        return b.manifest.select()

    out, peak = _bounded(load)
    assert peak < MEMORY_BOUND and (not isinstance(out, Exception) or isinstance(out, ValueError)), repr(out)
