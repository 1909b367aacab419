"""The device self-check: probes in the bundle, verdicts cached per file/engine/device/kernel family, and the
fallback to the next candidate when a file fails (a fake engine that perturbs embeddings stands in for
broken int8 kernels)."""

from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _selfcheck_helpers import install_fake_engine, write_probed_bundle  # noqa: E402

from imprinting.runtime.bundle import Manifest, load_bundle, read_manifest  # noqa: E402
from imprinting.runtime.extractor import ExtractorOptions  # noqa: E402
from imprinting.runtime.probes import read_probes, write_probes  # noqa: E402
from imprinting.runtime.selfcheck import CACHE_ENV, cache_dir  # noqa: E402


@pytest.fixture
def probed(tmp_path):
    return load_bundle(write_probed_bundle(tmp_path / "bundle"))


def _opts(tmp_path, **kw) -> ExtractorOptions:
    return ExtractorOptions(check_cache=str(tmp_path / "cache"), **kw)


def test_a_file_whose_engine_perturbs_embeddings_falls_back_to_the_next_with_one_line(probed, tmp_path, monkeypatch,
                                                                                       caplog):
    engines = install_fake_engine(monkeypatch, target="int8")
    assert probed.manifest.select().file == "extractor_int8.onnx"
    with caplog.at_level(logging.WARNING, logger="imprinting.runtime.selfcheck"):
        ex = probed.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_fp32.onnx" and ex.self_check.passed and ex.self_check.mean_cosine > 0.9999
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "self-check failed, skipping extractor_int8.onnx with fake-engine 1.0 (CPUExecutionProvider)" in lines[0]
    assert "< 0.99" in lines[0] and "6 probes" in lines[0]
    assert [e.path.name for e in engines] == ["extractor_int8.onnx", "extractor_fp32.onnx"]
    ex.close()


def test_verdicts_are_cached_per_key_and_a_second_open_runs_no_probes(probed, tmp_path, monkeypatch, caplog):
    engines = install_fake_engine(monkeypatch, target="int8")
    probed.open_extractor(options=_opts(tmp_path)).close()
    files = sorted((tmp_path / "cache").glob("*.json"))
    saved = [json.loads(f.read_text()) for f in files]
    assert len(files) == 2 and {d["verdict"]["passed"] for d in saved} == {True, False}
    assert {d["key"]["engine"] for d in saved} == {"fake-engine"} and all(d["key"]["int8_kernels"] for d in saved)
    engines.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imprinting.runtime.selfcheck"):
        ex = probed.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_fp32.onnx" and ex.self_check.cached
    assert [e.runs for e in engines] == [0, 0] and len(caplog.records) == 1  # the skip is still said, in one line
    # Another engine version is another key: checked anew.
    monkeypatch.setattr(type(engines[0]), "engine_version", "2.0")
    engines.clear()
    probed.open_extractor(options=_opts(tmp_path)).close()
    assert [e.runs for e in engines] == [6, 6] and len(list((tmp_path / "cache").glob("*.json"))) == 4  # a probe a run


def test_strict_check_turns_a_failed_check_into_an_error(probed, tmp_path, monkeypatch):
    install_fake_engine(monkeypatch, target="int8")
    with pytest.raises(ValueError, match=r"self-check failed: extractor_int8.onnx .* mean cosine .* < 0.99.*"
                                         r"drop --strict-check"):
        probed.open_extractor(options=_opts(tmp_path, self_check="strict"))
    ex = probed.open_extractor(precision="fp32", options=_opts(tmp_path, self_check="strict"))
    assert ex.entry.file == "extractor_fp32.onnx"
    ex.close()


def test_when_every_candidate_fails_the_closest_runs_with_a_warning(probed, tmp_path, monkeypatch, caplog):
    install_fake_engine(monkeypatch, target="extractor_", noise=0.3)
    with caplog.at_level(logging.WARNING, logger="imprinting.runtime.selfcheck"):
        ex = probed.open_extractor(precision="int8", options=_opts(tmp_path))
    assert ex.entry.file == "extractor_int8.onnx" and not ex.self_check.passed
    assert "no any/int8 file of bundle" in caplog.records[-1].getMessage() and len(caplog.records) == 2
    ex.close()


def test_off_and_bundles_without_probes_skip_the_check(probed, tiny_bundle, tmp_path, monkeypatch):
    engines = install_fake_engine(monkeypatch, target="int8")
    ex = probed.open_extractor(options=_opts(tmp_path, self_check="off"))
    assert ex.entry.file == "extractor_int8.onnx" and ex.self_check is None and engines[0].runs == 0
    ex.close()
    old = load_bundle(tiny_bundle)  # made before probes existed: opens as before
    assert old.manifest.probes is None and old.probes() is None
    ex = old.open_extractor(options=_opts(tmp_path))
    assert ex.self_check is None and not (tmp_path / "cache").exists()
    ex.close()
    with pytest.raises(ValueError, match="self_check must be one of"):
        ExtractorOptions(self_check="maybe")


def test_the_cache_directory_follows_the_option_the_environment_and_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "imprinting" / "selfcheck"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env" and cache_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_dir() is None


def test_an_uncached_check_runs_every_time(probed, tmp_path, monkeypatch):
    engines = install_fake_engine(monkeypatch, target="none")
    for _ in range(2):
        probed.open_extractor(options=ExtractorOptions(check_cache="off")).close()
    assert [e.runs for e in engines] == [6, 6]


def test_the_manifest_keeps_its_probes_and_older_manifests_read_without_them(probed):
    m = read_manifest(probed.path)
    assert m.probes.count == 6 and m.probes.threshold("int8") == 0.99 and m.probes.threshold("fp32") == 0.999
    assert Manifest.from_dict(m.to_dict()) == m
    d = m.to_dict()
    del d["probes"]
    assert Manifest.from_dict(d).probes is None and "probes" not in Manifest.from_dict(d).to_dict()
    d["probes"] = {"file": "../x.npz", "count": 2}
    with pytest.raises(ValueError, match="plain file name"):
        Manifest.from_dict(d)
    d["probes"] = {"file": "probes.npz", "count": 2, "thresholds": {"int4": 0.9}}
    with pytest.raises(ValueError, match="probe thresholds"):
        Manifest.from_dict(d)


def test_probe_files_are_read_without_pickle_and_checked(probed, tmp_path):
    crops, emb = probed.probes()
    with pytest.raises(ValueError, match=r"this bundle needs uint8 \(N, 16, 16, 3\)"):
        read_probes(probed.path / "probes.npz", 16, emb.shape[1])
    bad = tmp_path / "bad.npz"
    np.savez(bad, crops=np.array([object()]), embeddings=emb)
    with pytest.raises(ValueError, match="corrupt"):
        read_probes(bad, crops.shape[1], emb.shape[1])
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("other.npy", b"")
    with pytest.raises(ValueError, match="corrupt.*members"):
        read_probes(bad, crops.shape[1], emb.shape[1])
    with pytest.raises(ValueError, match="uint8"):
        write_probes(bad, crops.astype(np.float32), emb)
    (probed.path / "probes.npz").write_bytes((probed.path / "probes.npz").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="probes .* damaged or were replaced"):
        probed.open_extractor(options=ExtractorOptions(check_cache="off"))


def test_strict_check_flag(tiny_bundle):
    import argparse

    from imprinting.runtime.cli_options import model_args, recognizer_options

    p = argparse.ArgumentParser()
    model_args(p, store=None)
    assert recognizer_options(p.parse_args([str(tiny_bundle), "--strict-check"])).extractor.self_check == "strict"
    assert recognizer_options(p.parse_args([str(tiny_bundle)])).extractor.self_check == "on"


def test_openvino_runs_onnx_files_through_the_same_door_and_check(probed, tmp_path):
    pytest.importorskip("openvino")
    ex = probed.open_extractor(options=_opts(tmp_path, engine="openvino", threads=1))
    assert ex.backend == "openvino" and ex.device == "CPU:f32" and ex.entry.file == "extractor_int8.onnx"
    assert ex.self_check.passed and ex.self_check.engine == "openvino" and ex.self_check.mean_cosine > 0.9999
    crops, emb = probed.probes()
    from imprinting.runtime.preprocess import normalize

    np.testing.assert_allclose(ex.run(normalize(crops, probed.manifest.preprocess, "NCHW")), emb, rtol=1e-4, atol=1e-5)
    ex.close()
    with pytest.raises(ValueError, match="engine must be one of"):
        ExtractorOptions(engine="tensorrt")
    with pytest.raises(ValueError, match="cannot compile .* for OpenVINO NOPE"):
        probed.open_extractor(options=_opts(tmp_path, engine="openvino", openvino_device="NOPE"))


def test_a_recognizer_names_the_file_it_fell_back_to(probed, tmp_path, monkeypatch):
    from imprinting.runtime import Recognizer, RecognizerOptions

    install_fake_engine(monkeypatch, target="int8")
    with Recognizer(probed, None, RecognizerOptions(extractor=_opts(tmp_path))) as r:
        assert r.extractor_file.file == "extractor_fp32.onnx"
