"""Extractor files are checked when they load (one image input, one embedding output) and a backend failure
is one ValueError line, never onnxruntime's own exception escaping as a traceback (issue 26)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from imprinting.runtime.extractor import ExtractorOptions, load_extractor  # noqa: E402


def _model(path, outputs: int = 1, batch: int | str = "N") -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 8, 8])
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["embedding"])]
    outs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3])]
    if outputs == 2:  # an extra output placed first: it would have been used silently
        nodes.append(helper.make_node("Identity", ["pooled"], ["extra"]))
        outs.insert(0, helper.make_tensor_value_info("extra", TensorProto.FLOAT, [batch, 3, 1, 1]))
    graph = helper.make_graph(nodes, "g", [x], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_an_extractor_with_two_outputs_is_refused_in_one_line(tmp_path):
    _model(tmp_path / "two.onnx", outputs=2)
    with pytest.raises(ValueError, match="1 inputs and 2 outputs") as err:
        load_extractor(tmp_path / "two.onnx", ExtractorOptions())
    assert "\n" not in str(err.value)
    _model(tmp_path / "one.onnx")
    ex = load_extractor(tmp_path / "one.onnx", ExtractorOptions())
    assert ex.run(np.ones((2, 3, 8, 8), np.float32)).shape == (2, 3)


def test_a_backend_failure_is_a_one_line_value_error(tmp_path):
    _model(tmp_path / "fixed.onnx", batch=1)  # a graph exported for batch 1 only
    ex = load_extractor(tmp_path / "fixed.onnx", ExtractorOptions())
    with pytest.raises(ValueError, match="failed on a batch of shape") as err:
        ex.run(np.ones((2, 3, 8, 8), np.float32))
    assert "\n" not in str(err.value)
