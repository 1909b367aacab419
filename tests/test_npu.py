"""The Rockchip NPU door (runtime/_rknn.py) without a board: a fake `rknnlite` module that runs the tiny ONNX
graph through onnxruntime stands in for rknn-toolkit-lite2, so the backend's plumbing, the candidate order
(NPU file first), the self-check and the fall back to the CPU files are all exercised here."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types

import numpy as np
import pytest

pytest.importorskip("onnx")  # the probed tiny bundle is built with it (_selfcheck_helpers.py)
pytest.importorskip("onnxruntime")

from _selfcheck_helpers import write_probed_bundle  # noqa: E402

from imprinting.runtime.bundle import ExtractorEntry, file_sha256, load_bundle, read_manifest, write_manifest  # noqa: E402
from imprinting.runtime.extractor import ExtractorOptions, load_extractor  # noqa: E402
from imprinting.runtime.manifest import NPU_FILES  # noqa: E402


class FakeRKNNLite:
    """rknnlite.api.RKNNLite's calls as the backend makes them; the ".rknn" file holds ONNX bytes. `fail` names
    the step that returns an error status, as on a board whose SoC or driver does not match."""

    NPU_CORE_AUTO = 0
    fail: str | None = None
    noise = 0.0
    calls: list = []

    def __init__(self, verbose: bool = False) -> None:
        self.session = None

    def load_rknn(self, path: str) -> int:
        import onnxruntime as ort

        if self.fail == "load":
            return -1
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return 0

    def init_runtime(self, core_mask: int = 0) -> int:
        return -1 if self.fail == "init" else 0

    def inference(self, inputs, data_format=None):
        x = inputs[0]
        FakeRKNNLite.calls.append((x.shape, tuple(data_format)))
        assert x.shape[0] == 1 and data_format == ["nchw"], "the board takes one NCHW image per run"
        y = self.session.run(None, {self.session.get_inputs()[0].name: x})[0]
        return [y + self.noise * np.abs(y).max() * np.random.default_rng(0).normal(size=y.shape)]

    def release(self) -> None:
        self.session = None


@pytest.fixture
def fake_board(monkeypatch):
    FakeRKNNLite.fail, FakeRKNNLite.noise, FakeRKNNLite.calls = None, 0.0, []
    api = types.ModuleType("rknnlite.api")
    api.RKNNLite = FakeRKNNLite
    pkg = types.ModuleType("rknnlite")
    pkg.api = api
    monkeypatch.setitem(sys.modules, "rknnlite", pkg)
    monkeypatch.setitem(sys.modules, "rknnlite.api", api)
    return FakeRKNNLite


@pytest.fixture
def npu_bundle(tmp_path):
    """The probed tiny bundle plus an `.rknn` entry for rk3588 (its bytes: the fp32 ONNX graph)."""
    d = write_probed_bundle(tmp_path / "bundle")
    name, layout = NPU_FILES[("rknn", "int8")]
    shutil.copy(d / "extractor_fp32.onnx", d / name)
    m = read_manifest(d)
    entry = ExtractorEntry(file=name, format="rknn", precision="int8", layout=layout, sha256=file_sha256(d / name),
                           target="rk3588")
    write_manifest(d, type(m)(**{**vars(m), "extractors": (*m.extractors, entry)}))
    return load_bundle(d)


def _opts(tmp_path) -> ExtractorOptions:
    return ExtractorOptions(check_cache=str(tmp_path / "cache"))


def test_the_npu_file_comes_first_and_runs_image_by_image_through_the_self_check(npu_bundle, fake_board, tmp_path):
    assert npu_bundle.manifest.candidates()[0].file == "extractor_int8.rknn"
    ex = npu_bundle.open_extractor(options=_opts(tmp_path))
    assert ex.entry.format == "rknn" and ex.backend == "rknn" and ex.device == "npu"
    assert ex.self_check.passed and ex.self_check.device == "npu"
    x = np.random.default_rng(1).normal(size=(3, 3, ex.input_size, ex.input_size)).astype(np.float32)
    ref = load_extractor(npu_bundle.path / "extractor_fp32.onnx").run(x)
    np.testing.assert_allclose(ex.run(x), ref, rtol=1e-5, atol=1e-5)
    assert fake_board.calls[-3:] == [((1, 3, ex.input_size, ex.input_size), ("nchw",))] * 3
    ex.close()
    with pytest.raises(ValueError, match="is closed"):
        ex.run(x)


@pytest.mark.parametrize("step", ["load", "init"])
def test_an_npu_file_that_does_not_load_falls_back_to_the_cpu_files_with_one_line(npu_bundle, fake_board, tmp_path,
                                                                                  caplog, step):
    fake_board.fail = step
    with caplog.at_level(logging.WARNING, logger="imprinting.runtime.selfcheck"):
        ex = npu_bundle.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_int8.onnx"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "skipping extractor_int8.rknn" in lines[0] and "rknn-toolkit-lite2 cannot" in lines[0]
    ex.close()


def test_an_npu_file_with_wrong_results_fails_its_self_check_and_the_cpu_file_runs(npu_bundle, fake_board, tmp_path):
    fake_board.noise = 0.5
    ex = npu_bundle.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_int8.onnx"
    ex.close()


def test_without_the_npu_runtime_the_bundle_opens_its_cpu_files(npu_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rknnlite", None)  # `import rknnlite` raises ImportError, as off the board
    ex = npu_bundle.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_int8.onnx"
    ex.close()
    with pytest.raises(ImportError, match="rknn-toolkit-lite2 .* is not installed.*docs/npu.md"):
        npu_bundle.open_extractor("rknn", options=_opts(tmp_path))  # asked for by name: the reason, not a fallback


def test_a_missing_cpu_engine_is_skipped_like_a_missing_npu_runtime(npu_bundle, tmp_path, monkeypatch):
    # An ONNX-only install (`pip install 'imprinting[onnx]'`) with a bundle whose fastest file here is TFLite.
    import imprinting.runtime.extractor as extractor

    real = extractor.load_extractor

    def no_first_onnx(path, options=ExtractorOptions(), input_size=None):
        if path.name == "extractor_int8.onnx":
            raise ImportError("ai-edge-litert is not installed")
        return real(path, options, input_size)

    monkeypatch.setitem(sys.modules, "rknnlite", None)
    monkeypatch.setattr(extractor, "load_extractor", no_first_onnx)
    ex = npu_bundle.open_extractor(options=_opts(tmp_path))
    assert ex.entry.file == "extractor_fp32.onnx"
    ex.close()


def test_an_rknn_file_needs_its_input_size_and_manifests_refuse_unknown_fields(npu_bundle, tmp_path):
    with pytest.raises(ValueError, match="does not say its input size"):
        load_extractor(npu_bundle.path / "extractor_int8.rknn")
    import json

    d = json.loads((npu_bundle.path / "manifest.json").read_text())
    assert d["extractors"][-1]["target"] == "rk3588" and "target" not in d["extractors"][0]  # CPU entries unchanged
    for bad, message in (({"device": "npu"}, "unknown extractor field"), ({"target": 3588}, "'target' must be a string")):
        d["extractors"][-1].update(bad)
        (tmp_path / "m").mkdir(exist_ok=True)
        (tmp_path / "m" / "manifest.json").write_text(json.dumps(d))
        with pytest.raises(ValueError, match=message):
            read_manifest(tmp_path / "m")
        d["extractors"][-1].pop(next(iter(bad)))
        d["extractors"][-1]["target"] = "rk3588"


def test_info_names_the_first_file_whose_engine_is_installed(npu_bundle, fake_board, monkeypatch, capsys):
    from imprinting.cli import main

    assert main(["info", str(npu_bundle.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_file"] == "extractor_int8.rknn"  # on the board
    monkeypatch.setitem(sys.modules, "rknnlite", None)
    assert main(["info", str(npu_bundle.path)]) == 0
    assert capsys.readouterr().out.strip().endswith("default file extractor_int8.onnx")  # off it


def test_doctor_lists_the_npu_file_on_the_board_and_the_runtime_picks_it(npu_bundle, fake_board, monkeypatch):
    from imprinting.runtime.doctor import DoctorOptions, diagnose

    report = diagnose(npu_bundle.path, DoctorOptions(runs=2, warmup=0, threads=(1,), isolate=False))
    rknn = [r for r in report["results"] if r["file"] == "extractor_int8.rknn"]
    assert len(rknn) == 1 and rknn[0]["engine"] == "rknn" and rknn[0]["check"]["passed"]
    assert report["chosen"]["file"] == "extractor_int8.rknn"
    monkeypatch.setitem(sys.modules, "rknnlite", None)  # off the board: no row, a CPU file is chosen
    report = diagnose(npu_bundle.path, DoctorOptions(runs=2, warmup=0, threads=(1,), isolate=False))
    assert {r["file"] for r in report["results"]} == {"extractor_int8.onnx", "extractor_fp32.onnx"}
    assert report["chosen"]["file"] == "extractor_int8.onnx"
