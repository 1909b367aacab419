"""Export round trips: a tiny random-weight extractor through ONNX and TFLite, fp32 and int8, read back by
the runtime; parity failures and bad options give their messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("skimage")

from _export_helpers import tiny_extractor  # noqa: E402

from imprinting.export.calibration import sample_photos  # noqa: E402
from imprinting.export.exporters import BaseClasses, ExportOptions, ParityError, export_bundle  # noqa: E402
from imprinting.export.model import CosineClassifier, state_fingerprint  # noqa: E402
from imprinting.export.parity import ParityThresholds  # noqa: E402
from imprinting.runtime.bundle import load_bundle  # noqa: E402
from imprinting.runtime.preprocess import PreprocessSpec, preprocess  # noqa: E402

SPEC = PreprocessSpec(input_size=64, resize_size=72)
LABELS = ("apple", "bear", "cup", "dog", "egg")
COUNTS = (3, 4, 5, 6, 7)


def _options(**kw) -> ExportOptions:
    base = dict(preprocess=SPEC, calib_count=32, parity_count=16, float_prefix_convs=1)
    base.update(kw)
    return ExportOptions(**base)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_extractor(dim=16)
    clf = CosineClassifier(len(LABELS), 16, scale=7.0)
    out = tmp_path_factory.mktemp("bundle")
    result = export_bundle(model, out, _options(), base=BaseClasses(LABELS, clf, COUNTS))
    return model, clf, result


def test_every_format_and_precision_is_in_the_manifest_with_its_parity(exported):
    _, _, result = exported
    m = load_bundle(result.bundle_dir).manifest
    got = {(e.format, e.precision): e for e in m.extractors}
    assert set(got) == {("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")}
    assert got[("onnx", "fp32")].layout == "NCHW" and got[("tflite", "int8")].layout == "NHWC"
    for (_, precision), e in got.items():
        assert e.parity_cosine >= (0.999 if precision == "fp32" else 0.99)
        assert e.normalized and len(e.sha256) == 64
    assert m.embedding_dim == 16 and m.scale == pytest.approx(7.0) and m.preprocess == SPEC
    assert m.calibration["images"] == 32 and m.versions["torch"]
    assert all(f.parity.top1_agreement is not None for f in result.files)


def test_the_bundle_carries_an_unknown_threshold_that_the_runtime_applies(exported):
    from imprinting.runtime import Recognizer

    _, _, result = exported
    cal = load_bundle(result.bundle_dir).manifest.calibration
    # (the tiny random test model barely tells photos apart, so its threshold may sit at the top of the range)
    assert -1.0 <= cal["unknown_min_cosine"] <= 1.0 and cal["unknown_false_accept"] == 0.05
    assert cal["unknown_trials"]["negatives"] > 100 and 0.0 <= cal["unknown_accept"] <= 1.0
    # Issue 29: one operating point per shot count the sample photos support, each keeping >= 95% of right answers
    # (or saying it could not: no right answer at all), and the runtime applies the table.
    table, rates = cal["unknown_min_evidence_by_shots"], cal["unknown_rates_by_shots"]
    assert list(table) == ["1", "2", "5", "10"] == list(rates) and table["1"] == cal["unknown_min_cosine"]
    assert all(r["accept"] >= 0.95 or r["positives"] == 0 for r in rates.values())
    with Recognizer.open(result.bundle_dir) as r:
        assert r.unknown.min_cosine == cal["unknown_min_cosine"]
        assert r.unknown.min_evidence_by_shots.to_mapping() == table


def test_runtime_reproduces_pytorch_embeddings_from_every_file(exported):
    model, _, result = exported
    bundle = load_bundle(result.bundle_dir)
    images = sample_photos(("chelsea", "astronaut"))
    with torch.no_grad():
        ref = model(torch.from_numpy(preprocess(images, SPEC, "NCHW"))).numpy()
    for e in bundle.manifest.extractors:
        ex = bundle.open_extractor(e.format, e.precision)  # checks sha256, dim, layout and size
        out = ex.run(preprocess(images, SPEC, ex.layout))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        cos = np.sum(out * ref, axis=1)
        assert cos.min() > (0.9999 if e.precision == "fp32" else 0.98), (e.file, cos)


def test_onnx_has_a_dynamic_batch_and_tflite_takes_nhwc_batch_one(exported):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    d = exported[2].bundle_dir
    inp = ort.InferenceSession(str(d / "extractor_fp32.onnx")).get_inputs()[0]
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 64, 64]
    it = Interpreter(model_path=str(d / "extractor_fp32.tflite"))
    assert list(it.get_input_details()[0]["shape"]) == [1, 64, 64, 3]
    assert "TRANSPOSE" not in {op["op_name"] for op in it._get_ops_details()}


def test_int8_files_are_really_quantized(exported):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    d = exported[2].bundle_dir
    ops = {n.op_type for n in onnx.load(str(d / "extractor_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    it = Interpreter(model_path=str(d / "extractor_int8.tflite"))
    assert any(t["dtype"] == np.int8 for t in it.get_tensor_details())


def test_base_classes_are_stored_as_imprinted_sums_with_the_fingerprint(exported):
    model, clf, result = exported
    bundle = load_bundle(result.bundle_dir)
    assert bundle.manifest.fingerprint == state_fingerprint(model)
    store = bundle.base_classes()
    assert store.labels == LABELS and store.scale == pytest.approx(7.0)
    np.testing.assert_array_equal(store.counts, COUNTS)
    w = clf.unit_weight().detach().numpy()
    np.testing.assert_allclose(store.sums, w * np.asarray(COUNTS, np.float32)[:, None], rtol=1e-6)


def test_a_failed_file_is_left_out_and_recorded_while_the_others_ship(tmp_path):
    opts = _options(formats=("onnx",), thresholds=ParityThresholds(cosine_int8=1.5))
    result = export_bundle(tiny_extractor(), tmp_path, opts)
    m = load_bundle(tmp_path).manifest
    assert [e.file for e in m.extractors] == ["extractor_fp32.onnx"] and m.select().file == "extractor_fp32.onnx"
    assert [r["file"] for r in m.rejected] == ["extractor_int8.onnx"] and m.rejected[0]["parity_cosine"] > 0.5
    assert "mean cosine" in m.rejected[0]["reason"] and not (tmp_path / "extractor_int8.onnx").exists()
    assert [f.file for f in result.rejected] == ["extractor_int8.onnx"]
    assert m.host["int8_kernels"].startswith(("x86", "arm", "other")) and m.host["features"] is not None


def test_strict_export_fails_on_any_failed_file(tmp_path):
    opts = _options(formats=("onnx",), thresholds=ParityThresholds(cosine_int8=1.5), strict=True)
    with pytest.raises(ParityError, match=r"extractor_int8.onnx failed its parity check.*next:"):
        export_bundle(tiny_extractor(), tmp_path, opts)
    assert not (tmp_path / "manifest.json").exists()


def test_failed_parity_raises_and_writes_no_manifest(tmp_path):
    opts = _options(formats=("onnx",), precisions=("fp32",), thresholds=ParityThresholds(cosine_fp32=1.5))
    with pytest.raises(ParityError, match=r"every exported file failed.*extractor_fp32.onnx: mean cosine.*must reproduce PyTorch"):
        export_bundle(tiny_extractor(), tmp_path, opts)
    assert not (tmp_path / "manifest.json").exists()
    # The same directory can take the next attempt.
    export_bundle(tiny_extractor(), tmp_path, _options(formats=("onnx",), precisions=("fp32",)))
    assert json.loads((tmp_path / "manifest.json").read_text())["extractors"][0]["file"] == "extractor_fp32.onnx"


def test_plain_extractor_has_no_base_classes(tmp_path):
    result = export_bundle(tiny_extractor(dim=0), tmp_path, _options(formats=("onnx",), precisions=("fp32",)))
    assert result.manifest.base_classes is None and result.manifest.embedding_dim == 32
    assert load_bundle(tmp_path).base_classes() is None
    # Re-exporting into a bundle replaces it: files of formats not exported again do not linger.
    export_bundle(tiny_extractor(dim=0), tmp_path, _options(formats=("tflite",), precisions=("fp32",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extractor_fp32.tflite", "manifest.json", "probes.npz"]


def test_the_bundle_carries_probes_that_every_file_passes_here(exported, tmp_path):
    from imprinting.runtime.extractor import ExtractorOptions
    from imprinting.runtime.preprocess import normalize
    from imprinting.runtime.selfcheck import check

    model, _, result = exported
    bundle = load_bundle(result.bundle_dir)
    probes = bundle.manifest.probes
    assert probes.file == "probes.npz" and probes.count == 8 and probes.thresholds == {"fp32": 0.999, "int8": 0.99}
    crops, emb = bundle.probes()
    assert crops.dtype == np.uint8 and crops.shape == (8, 64, 64, 3) and emb.shape == (8, 16)
    with torch.no_grad():  # the references are PyTorch fp32 on exactly the stored crops
        ref = model(torch.from_numpy(normalize(crops, SPEC, "NCHW"))).numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
    for e in bundle.manifest.extractors:
        ex = bundle.load_entry(e, ExtractorOptions())
        verdict = check(bundle, e, ex, cache=str(tmp_path))
        ex.close()
        assert verdict.passed and verdict.probes == 8 and verdict.mean_cosine >= verdict.threshold, verdict


def test_a_bundle_can_be_exported_again_into_its_own_folder(tmp_path):
    """Every file a bundle may hold (base classes, exemplars, probes) belongs to the one layout list."""
    from imprinting.runtime.bundle import BUNDLE_FILES

    clf = CosineClassifier(len(LABELS), 16, scale=7.0)
    unit = np.eye(5, 16, dtype=np.float32)
    base = BaseClasses(LABELS, clf, COUNTS, exemplars=(unit, np.arange(5)))
    opts = _options(formats=("onnx",), precisions=("fp32",))
    export_bundle(tiny_extractor(), tmp_path, opts, base=base)
    first = {p.name for p in tmp_path.iterdir()}
    assert {"base_classes.npz", "base_exemplars.npz", "probes.npz"} <= first <= BUNDLE_FILES
    export_bundle(tiny_extractor(), tmp_path, opts, base=base)
    assert {p.name for p in tmp_path.iterdir()} == first and load_bundle(tmp_path).base_exemplars() is not None


def test_base_classes_must_fit_the_extractor(tmp_path):
    clf = CosineClassifier(2, 8)
    with pytest.raises(ValueError, match=r"need \(2, 16\)"):
        export_bundle(tiny_extractor(dim=16), tmp_path, _options(), base=BaseClasses(("a", "b"), clf, (1, 1)))


def test_bad_options_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'tflte'.*did you mean 'tflite'"):
        ExportOptions(formats=("onnx", "tflte"))
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        ExportOptions(precisions=("fp16",))
    with pytest.raises(ValueError, match="choose at least one format"):
        ExportOptions(formats=())
    with pytest.raises(ValueError, match=r"probe_count must be in \[0, min\(parity_count, 64\)\] = \[0, 4\]"):
        ExportOptions(parity_count=4, probe_count=5)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not part of a bundle.*notes.txt"):
        export_bundle(tiny_extractor(), tmp_path, _options())


def test_calibration_folder_errors(tmp_path):
    from imprinting.export.calibration import load_image_dir

    with pytest.raises(ValueError, match="does not exist"):
        load_image_dir(tmp_path / "nope")
    with pytest.raises(ValueError, match="no images"):
        load_image_dir(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="could be decoded"):
        load_image_dir(tmp_path)


def test_top1_agreement_counts_clear_decisions_only(exported):
    from imprinting.export.parity import check_parity

    model, clf, result = exported
    d = result.bundle_dir
    images = sample_photos(("chelsea", "astronaut", "coffee"))
    x = preprocess(images, SPEC, "NCHW")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    w = clf.unit_weight().detach().numpy()
    rep = check_parity(d / "extractor_fp32.onnx", "fp32", x, ref, base_weights=w[[0, 0]])  # two equal rows: all ties
    assert rep.passed and rep.top1_agreement is None
    tight = ParityThresholds(top1_fp32=1.01, top1_margin=0.0)
    rep = check_parity(d / "extractor_fp32.onnx", "fp32", x, ref, tight, base_weights=w)
    assert not rep.passed and "top-1 agreement is 1.000 < 1.01" in rep.message
