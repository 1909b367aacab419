"""ONNX backend glue: fp32 export through torch.onnx (dynamo) and int8 through onnxruntime's static QDQ
quantization, with pair-safe weights so that the int8 file gives the same result on every CPU."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
# Ops after the global pool stay fp32 (the L2 norm: int8 sums of squares and rsqrt cost accuracy for
# nothing), except the embedding layer itself when asked: a 1280 x 1280 fp32 matrix is 6.5 MB, more than the
# whole int8 backbone.
_POOL_OPS = ("GlobalAveragePool", "ReduceMean")
_EMBED_OPS = ("Gemm", "MatMul")


def export_onnx_fp32(model: nn.Module, path: Path, input_size: int) -> None:
    """Export `model` (float32 (N, 3, S, S) -> (N, D)) to ONNX opset 18 with a dynamic batch axis."""
    sample = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            model.eval(), (sample,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), verbose=False, external_data=False,
        )
        program.save(str(path), external_data=False)
    except Exception as err:  # the exporter raises many types; say which step failed
        raise RuntimeError(f"torch.onnx.export failed for {path.name}: {err}") from err


class _BatchReader:
    """onnxruntime CalibrationDataReader over an in-memory array (N, 3, S, S), in batches."""

    def __init__(self, inputs: np.ndarray, batch: int = 8) -> None:
        self._inputs, self._batch, self._i = inputs, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._inputs):
            return None
        out = {INPUT_NAME: np.ascontiguousarray(self._inputs[self._i : self._i + self._batch])}
        self._i += self._batch
        return out

    def rewind(self) -> None:
        self._i = 0


def float_node_names(model_path: Path, float_prefix_convs: int, quantize_embedding: bool = True) -> list[str]:
    """Nodes to leave in fp32: the first `float_prefix_convs` Conv nodes and everything after the pool
    (but the embedding layer's matrix product when quantize_embedding)."""
    import onnx

    nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    convs = [n.name for n in nodes if n.op_type == "Conv"][:float_prefix_convs]
    pools = [i for i, n in enumerate(nodes) if n.op_type in _POOL_OPS]
    tail = [n.name for n in nodes[pools[-1] + 1 :]
            if not (quantize_embedding and n.op_type in _EMBED_OPS)] if pools else []
    return convs + tail


@dataclass(frozen=True)
class OnnxInt8Report:
    """What the int8 recipe did: output channels rescaled by `pair_safe`."""

    rescaled_channels: int


def quantize_onnx_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, float_prefix_convs: int,
                       quantize_embedding: bool = True) -> OnnxInt8Report:
    """Static int8 QDQ quantization that computes the same on every CPU: per-channel int8 weights made
    pair-safe (see pair_safe.py), uint8 activations, min/max calibration on `calibration` float32
    (N, 3, S, S) (already through the shared preprocessing).

    Only the leading convolutions (before the first quantized activation) and the ops after the pool stay
    float: onnxruntime quantizes the float weights of a convolution that sits between a DequantizeLinear
    and a QuantizeLinear itself when it loads the file (per tensor, not pair-safe), so a float island
    inside the backbone would not stay float.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .pair_safe import apply_updates, plan_updates

    with tempfile.TemporaryDirectory(prefix="imprint-onnx-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        # Shape inference without the graph optimizer: the optimizer turns each Clip (ReLU6) into a Min
        # that the quantizer leaves in float between Q/DQ pairs (31 float islands: int8 no faster than fp32).
        quant_pre_process(str(fp32_path), str(pre), skip_optimization=True, skip_symbolic_shape=False)
        exclude = float_node_names(pre, float_prefix_convs, quantize_embedding)
        log.debug("keeping %d ONNX nodes in fp32: %s", len(exclude), exclude)
        quantize_static(
            str(pre), str(q), _BatchReader(calibration), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
        )
        model = onnx.load(str(q))
        updates = plan_updates(model)
        apply_updates(model, updates)
        rescaled = sum(u.channels for u in updates)
        log.debug("int8 ONNX: %d output channels rescaled to be pair-safe", rescaled)
        onnx.save(model, str(out_path))
    return OnnxInt8Report(rescaled)
