"""Base-class exemplars (runtime/exemplars.py): picked per class, written as float16, refused when damaged."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from imprinting.runtime.exemplars import pick_exemplars, read_exemplars, write_exemplars


def test_exemplars_round_trip_per_class_and_unit_length(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [3, 12, 12, 12])
    emb, cls = pick_exemplars(rng.standard_normal((39, 16)).astype(np.float32) * 3, labels, per_class=10, seed=1)
    assert np.bincount(cls).tolist() == [3, 10, 10, 10]  # a class with fewer images keeps all of them
    write_exemplars(tmp_path / "e.npz", emb, cls)
    back, back_cls = read_exemplars(tmp_path / "e.npz", num_classes=4, dim=16)
    np.testing.assert_array_equal(back_cls, cls)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(back, emb, atol=2e-3)  # float16 on disk


def test_damaged_or_mismatched_exemplars_are_refused_with_the_reason(tmp_path):
    emb = np.eye(4, 8, dtype=np.float32)
    write_exemplars(tmp_path / "e.npz", emb, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="this bundle needs float16 \\(M, 16\\)"):
        read_exemplars(tmp_path / "e.npz", num_classes=4, dim=16)
    with pytest.raises(ValueError, match="outside the bundle's 3 base classes"):
        read_exemplars(tmp_path / "e.npz", num_classes=3, dim=8)
    with zipfile.ZipFile(tmp_path / "e.npz", "a") as z:  # a stray member (a pickle, say) is not read
        z.writestr("extra.npy", b"\x80\x04")
    with pytest.raises(ValueError, match="corrupt: members"):
        read_exemplars(tmp_path / "e.npz", num_classes=4, dim=8)
    np.savez(tmp_path / "obj.npz", embeddings=np.array([{"x": 1}], dtype=object), classes=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="corrupt"):  # an object array would need pickle: refused
        read_exemplars(tmp_path / "obj.npz", num_classes=4, dim=8)
    np.savez(tmp_path / "zero.npz", embeddings=np.zeros((2, 8), np.float16), classes=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="not unit embeddings"):
        read_exemplars(tmp_path / "zero.npz", num_classes=4, dim=8)
    with pytest.raises(ValueError, match="do not exist"):
        read_exemplars(tmp_path / "none.npz", num_classes=4, dim=8)
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        pick_exemplars(emb, np.arange(4), per_class=0)
