from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imprinting.runtime import ClassSet, read_store, write_store
from imprinting.runtime.store import STORE_FORMAT

D = 24


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def classifier(n: int = 5, templates: int = 1, seed: int = 0) -> ClassSet:
    rng = np.random.default_rng(seed)
    clf = ClassSet(D, 12.5, "sha256:abc", templates_per_class=templates)
    for i in range(n):
        clf.learn(f"class {i} é", rng.normal(size=(i + 1, D)).astype(np.float32))
    return clf


def test_round_trip_keeps_everything(tmp_path):
    clf = classifier(templates=3)
    path = tmp_path / "store.npz"
    write_store(path, clf.to_store_data())
    data = read_store(path, expected_fingerprint="sha256:abc", expected_dim=D)
    again = ClassSet.from_store_data(data)
    assert again.labels == clf.labels
    assert again.scale == 12.5 and again.templates_per_class == 3
    np.testing.assert_array_equal(data.sums, clf.to_store_data().sums)
    np.testing.assert_array_equal(data.counts, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(data.shots, clf.to_store_data().shots)
    assert again.to_store_data().shot_ids == clf.to_store_data().shot_ids
    assert not list(tmp_path.glob(".*tmp")), "a temp file was left behind"
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask(), "saved files get the usual permissions"
    path.chmod(0o640)
    write_store(path, clf.to_store_data())
    assert path.stat().st_mode & 0o777 == 0o640, "a save keeps the old file's permissions"


def test_file_is_portable_npz_without_pickle(tmp_path):
    path = tmp_path / "store.npz"
    write_store(path, classifier().to_store_data())
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["counts.npy", "meta.npy", "shot_class.npy", "shots.npy", "sums.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        meta = json.loads(np.lib.format.read_array(z.open("meta.npy"), allow_pickle=False).tobytes())
    assert meta["format"] == STORE_FORMAT and meta["labels"][0] == "class 0 é" and meta["embedding_dim"] == D
    assert len(meta["shot_ids"]) == 15 and all(len(i) == 32 for i in meta["shot_ids"])


def _rewrite(path: Path, **arrays) -> None:
    with np.load(path, allow_pickle=False) as z:
        content = {k: z[k] for k in z.files}
    content.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **content)


def _meta(path: Path, **changes) -> np.ndarray:
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
    meta.update(changes)
    return np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.fixture
def stored(tmp_path) -> Path:
    path = tmp_path / "store.npz"
    write_store(path, classifier().to_store_data())
    return path


def test_refuses_another_extractor_naming_both_fingerprints(stored):
    with pytest.raises(ValueError, match=r"made with extractor sha256:abc but this model is sha256:other"):
        read_store(stored, expected_fingerprint="sha256:other")


def test_refuses_another_embedding_dim(stored):
    with pytest.raises(ValueError, match=r"holds 24-d embeddings but this model makes 64-d"):
        read_store(stored, expected_dim=64)


def test_refuses_truncated_file(stored):
    data = stored.read_bytes()
    stored.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_store(stored)


def test_refuses_corrupt_bytes(stored):
    data = bytearray(stored.read_bytes())
    data[:200] = os.urandom(200)
    stored.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_store(stored)


def test_refuses_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_store(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="does not exist"):
        read_store(tmp_path / "missing.npz")


def test_refuses_unknown_format_version(stored):
    _rewrite(stored, meta=_meta(stored, format_version=99))
    with pytest.raises(ValueError, match="format version 99; this runtime reads version 1"):
        read_store(stored)


def test_refuses_inconsistent_arrays(stored):
    _rewrite(stored, counts=np.ones(3, np.int64))
    with pytest.raises(ValueError, match="5 labels but sums of shape .* and counts of shape"):
        read_store(stored)


def test_refuses_nan_sums(stored):
    sums = read_store(stored).sums.copy()
    sums[0, 0] = np.nan
    _rewrite(stored, sums=sums)
    with pytest.raises(ValueError, match="NaN"):
        read_store(stored)


def test_refuses_pickled_object_arrays(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"x": 1}], dtype=object), sums=np.zeros((1, 2)), counts=np.ones(1))
    with pytest.raises(ValueError, match="corrupt.*never unpickled"):
        read_store(path)


def test_refuses_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, meta=np.frombuffer(b'{"format": "x"}', np.uint8), sums=np.zeros((1, 2)), counts=np.ones(1))
    with pytest.raises(ValueError, match="is not an imprinting class store"):
        read_store(path)


def test_failed_save_leaves_the_old_store(stored, monkeypatch):
    before = stored.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space"):
        write_store(stored, classifier(n=9).to_store_data())
    assert stored.read_bytes() == before
    assert not list(stored.parent.glob(".*tmp"))


def test_save_into_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_store(tmp_path / "nope" / "s.npz", classifier().to_store_data())


_SLOW_WRITER = r"""
import sys, time
import numpy as np
from imprinting.runtime import ClassSet, write_store
real = np.savez
def slow_savez(f, **arrays):
    f.write(b"PK\x03\x04 partial data that is not a complete zip" * 1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez = slow_savez
clf = ClassSet(24, 1.0, "sha256:abc")
clf.learn("new", np.ones(24, np.float32))
write_store(sys.argv[1], clf.to_store_data())
"""


def test_a_writer_killed_in_the_middle_of_a_save_leaves_the_previous_store_loadable(stored):
    before = read_store(stored)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(stored)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert list(stored.parent.glob(".*tmp")), "the writer should be writing a temp file"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = read_store(stored)
    assert after.labels == before.labels
    np.testing.assert_array_equal(after.sums, before.sums)


def test_a_forged_header_or_a_zip_bomb_is_refused_before_anything_is_allocated(stored, tmp_path):
    import io
    import zipfile

    # A 1 KB store whose sums header claims a 10^12-element array.
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "sums.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
                data = buf.getvalue() + b"\0" * 64
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match="claims shape"):
        read_store(forged)
    # An extra member that inflates to 200 MB is never read; a known member that inflates that much is refused.
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("extra.npy", b"\0" * (200 << 20))
    assert read_store(bomb).labels == read_store(stored).labels
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "shot_class.npy" or info.filename == "counts.npy":
                buf = io.BytesIO()
                np.save(buf, np.zeros(25 << 20, np.int64))
                data = buf.getvalue()
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match="inflates"):
        read_store(bomb)


def test_labels_stored_as_a_string_are_refused(stored, tmp_path):
    import json

    data = read_store(stored)
    path = tmp_path / "s.npz"
    meta = {"format": "imprinting-class-store", "format_version": 1, "labels": "cat", "scale": 10.0,
            "embedding_dim": data.embedding_dim, "extractor_fingerprint": "x", "templates_per_class": 1}
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), sums=np.zeros((3, data.embedding_dim), np.float32),
             counts=np.ones(3, np.int64))
    with pytest.raises(ValueError, match="labels must be a list of strings"):
        read_store(path)


def test_labels_are_nfc_and_refuse_invisible_characters():
    from imprinting.runtime.labels import validate_label

    assert validate_label("cafe\u0301") == "caf\u00e9"  # decomposed and composed spell one label
    for bad in ("cat\u200b", "a\u202eb", "x\x00", "tab\there"):
        with pytest.raises(ValueError, match="control or invisible"):
            validate_label(bad)


def test_temp_files_left_by_killed_saves_are_removed_by_the_next_save(stored):
    import os
    import time

    old = stored.parent / f".{stored.name}.abc123.tmp"
    fresh = stored.parent / f".{stored.name}.def456.tmp"
    old.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    write_store(stored, read_store(stored))
    assert not old.exists() and fresh.exists()  # a fresh one may belong to a save in progress
