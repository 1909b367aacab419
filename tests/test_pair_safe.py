"""Pair-safe int8 weights: no neighbour pair that x86's u8s8 kernels (VPMADDUBSW) can saturate, in the file
and in the graph onnxruntime actually runs after its own optimizations."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from imprinting.export.pair_safe import PAIR_LIMIT, pair_safe_requantize, saturating_channels


def test_saturating_channels_finds_same_signed_neighbours_over_the_limit():
    q = np.zeros((4, 6), np.int8)
    q[0, 0:2] = (100, 60)     # same sign, 160 > 128: saturates
    q[1, 0:2] = (100, -60)    # opposite signs: cannot
    q[2, 1:3] = (100, 60)     # not a pair (indices 1 and 2)
    q[3, 2:4] = (-64, -64)    # exactly the limit: cannot
    assert saturating_channels(q, conv=False).tolist() == [True, False, False, False]


def test_conv_weights_are_checked_in_both_flattenings():
    q = np.zeros((1, 2, 1, 2), np.int8)  # O, I, H, W
    q[0, 0, 0, 0], q[0, 1, 0, 0] = 100, 100  # neighbours only in OHWI (channels-last) order
    assert saturating_channels(q, conv=True).tolist() == [True]
    assert saturating_channels(q, conv=False).tolist() == [False]


def test_requantized_channels_are_safe_close_and_only_where_needed():
    rng = np.random.default_rng(0)
    w = rng.laplace(size=(64, 96, 1, 1)).astype(np.float32)
    scale = np.abs(w).reshape(64, -1).max(1) / 127
    q = np.round(w / scale[:, None, None, None]).astype(np.int8)
    bad = saturating_channels(q, conv=True)
    assert bad.any() and not bad.all()
    new, factor = pair_safe_requantize(q, scale, conv=True)
    assert not saturating_channels(new, conv=True).any()
    assert (factor[~bad] == 1).all() and (factor[bad] > 1).all() and (factor <= 2).all()
    assert (new[~bad] == q[~bad]).all()
    deq = new.astype(np.float32) * (scale * factor)[:, None, None, None]
    # Requantized from the int8 values: two roundings (half a step of each scale), never a clip.
    assert (np.abs(deq - w) <= (scale * (0.5 + 0.5 * factor))[:, None, None, None] + 1e-6).all()
    pairs = new.reshape(64, -1).astype(int)
    assert (np.abs(pairs[:, 0::2]) + np.abs(pairs[:, 1::2]) <= PAIR_LIMIT)[pairs[:, 0::2] * pairs[:, 1::2] > 0].all()


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from _export_helpers import tiny_extractor

    from imprinting.export.exporters import ExportOptions, export_bundle
    from imprinting.runtime.preprocess import PreprocessSpec

    out = tmp_path_factory.mktemp("b")
    spec = PreprocessSpec(input_size=64, resize_size=72)
    opts = ExportOptions(formats=("onnx",), precisions=("int8",), preprocess=spec, calib_count=32, parity_count=16,
                         float_prefix_convs=1)
    export_bundle(tiny_extractor(dim=16), out, opts)
    return out / "extractor_int8.onnx"


def _optimized(path, tmp_path):
    """The graph onnxruntime runs: its own optimizations applied (QDQ fusion, load-time weight quantization)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "opt.onnx"))


def test_the_graph_onnxruntime_runs_has_no_float_islands_and_only_pair_safe_weights(int8_onnx, tmp_path):
    from onnx import numpy_helper

    g = _optimized(int8_onnx, tmp_path).graph
    ops = collections.Counter(n.op_type for n in g.node)
    # The tiny backbone: stem (the float prefix), depthwise, head. Only the stem stays float.
    assert ops["Conv"] + ops["FusedConv"] == 1 and ops["QLinearConv"] == 2, ops
    # Between the Quantize after the prefix and the Dequantize before the pool, every op runs in int8:
    # no Q/DQ pair around a float op (such as the Min a ReLU6 becomes) inside the backbone.
    order = [n.op_type for n in g.node]
    start = order.index("QuantizeLinear")
    end = next(i for i in range(start, len(order)) if order[i] == "DequantizeLinear")
    assert end > start + 1 and all(op.startswith("QLinear") for op in order[start + 1 : end]), order
    inits = {i.name: i for i in g.initializer}
    for n in g.node:
        if n.op_type == "QLinearConv" and next((a.i for a in n.attribute if a.name == "group"), 1) == 1:
            w = numpy_helper.to_array(inits[n.input[3]])
            assert w.dtype == np.int8 and not saturating_channels(w, conv=True).any(), n.name


def test_every_weight_of_the_exported_file_is_pair_safe(int8_onnx):
    import onnx

    from imprinting.export.pair_safe import count_saturating_pairs

    assert count_saturating_pairs(onnx.load(str(int8_onnx))) == 0
