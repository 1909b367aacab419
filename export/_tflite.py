"""TFLite backend glue: fp32 conversion with litert-torch (no TensorFlow) and static int8 with
ai-edge-quantizer."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model import ChannelsLast

log = logging.getLogger(__name__)

# Ops after the global pool (the L2 norm) stay float: cheap, and int8 hurts them most; the embedding layer
# (FULLY_CONNECTED) is quantized unless asked not to (its fp32 matrix is up to 6.5 MB).
# INPUT/OUTPUT are the graph's own tensors: float I/O lets the interpreter quantize inside the graph (faster
# than NumPy in the runtime) and returns float embeddings.
_FLOAT_OP_NAMES = ("INPUT", "OUTPUT", "MEAN", "MUL", "SUM", "MAXIMUM", "RSQRT")
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} is not installed; install it with: pip install 'imprinting[export]' ({err})") from None


def convert_tflite_fp32(model: nn.Module, path: Path, input_size: int) -> None:
    """Convert `model` (float32 (N, 3, S, S) -> (N, D)) to a batch-1 TFLite file with NHWC input.

    The NCHW->NHWC permute sits at the graph input, where the converter folds it away, so the TFLite graph
    runs in its native layout without transposes.
    """
    litert_torch = _require("litert_torch", "litert-torch (TFLite conversion)")
    sample = torch.zeros(1, input_size, input_size, 3)
    try:
        edge = litert_torch.convert(ChannelsLast(model).eval(), (sample,))
        edge.export(str(path))
    except Exception as err:  # the converter raises many types; say which step failed
        raise RuntimeError(f"litert-torch conversion failed for {path.name}: {err}") from err


def _signature(model_bytes: bytes) -> tuple[str, str]:
    from ai_edge_litert import interpreter

    sigs = interpreter.Interpreter(model_content=model_bytes).get_signature_list()
    key = next(iter(sigs))
    return key, sigs[key]["inputs"][0]


def _float_prefix_regex(model_bytes: bytes, float_prefix_convs: int) -> str | None:
    """Regex matching the output tensors of the first `float_prefix_convs` convolutions."""
    if float_prefix_convs <= 0:
        return None
    from ai_edge_litert import interpreter

    it = interpreter.Interpreter(model_content=model_bytes)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    convs = [op for op in it._get_ops_details() if op["op_name"] in _CONV_OPS][:float_prefix_convs]
    outs = [names[op["outputs"][0]] for op in convs]
    # ai-edge-quantizer names an op's scope "<output tensor names joined by ;>;".
    return "^(" + "|".join(re.escape(n) for n in outs) + ");$" if outs else None


def quantize_tflite_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, float_prefix_convs: int,
                         quantize_embedding: bool = True) -> None:
    """Static int8 weights and activations with ai-edge-quantizer, min/max calibrated on `calibration`
    float32 (N, S, S, 3) (already through the shared preprocessing). Input and output stay float32.""" 
    aeq = _require("ai_edge_quantizer", "ai-edge-quantizer (TFLite int8)")
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName as Op
    from ai_edge_quantizer.utils import qsv_utils

    model_bytes = fp32_path.read_bytes()
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(".*", Op.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    for name in _FLOAT_OP_NAMES + (() if quantize_embedding else ("FULLY_CONNECTED",)):
        rm.add_quantization_config(".*", Op[name], algorithm_key=AlgorithmName.NO_QUANTIZE)
    prefix = _float_prefix_regex(model_bytes, float_prefix_convs)
    if prefix:
        rm.add_quantization_config(prefix, Op.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
    key, input_name = _signature(model_bytes)
    data = {key: [{input_name: calibration[i : i + 1]} for i in range(len(calibration))]}
    # The default moving-average range update forgets early samples and clips their outliers (cosine 0.970
    # against 0.988 with true min/max on Lite0), so calibrate with a plain min/max update.
    calib = calibrator.Calibrator(model_bytes, num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate(data, rm)
    q = aeq.Quantizer(model_bytes, rm.get_quantization_recipe())
    q.quantize(calib.get_model_qsvs(), serialize_to_path=str(out_path), enable_progress_report=False)
