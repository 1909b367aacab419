"""Int8 weights that x86's u8s8 kernels cannot saturate, so one int8 ONNX file computes the same on every CPU.

onnxruntime multiplies uint8 activations by int8 weights. On x86 with AVX2 but without VNNI (AVX2, AVX-512
without VNNI) its kernels use VPMADDUBSW, which adds two neighbouring products along the reduction axis into an
int16 *with saturation*: with activations up to 255, a pair of same-signed weights whose magnitudes sum to
more than 128 can overflow (255 * 129 > 32767). VNNI, AMX and ARM kernels accumulate in int32 and never do.
An int8 file that is accurate on one machine can therefore be wrong on another (mean cosine 0.975 instead
of 0.996 on an AVX2-only host for EfficientNet-Lite0).

The fix here keeps 8-bit weights and changes only the output channels that hold such a pair: each gets the
smallest scale factor t >= 1 whose rounded weights have none (its bias is requantized to match). Unlike
onnxruntime's `reduce_range` (7-bit weights everywhere: mean cosine 0.985), most channels keep their full
precision. The pairing follows the kernels' packing: neighbours along the flattened reduction axis, for a
convolution in both the OIHW and the OHWI (channels-last) flattening. Depthwise convolutions run an int32
kernel and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest magnitude sum of two same-signed int8 weights that cannot overflow int16 with u8 inputs.
PAIR_LIMIT = 128
_MAX_FACTOR = 2.0  # t = 2 gives 7-bit weights, where no pair can exceed the limit
_FACTOR_STEP = 0.005
_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class WeightUpdate:
    """New values for the initializers of one quantized weight: the int8 tensor, its scale, and the int32
    bias (and its scale) of each consumer; `channels` is how many output channels were rescaled."""

    weight: str
    node: str
    arrays: tuple[tuple[str, np.ndarray], ...]
    channels: int


def _flattenings(q: np.ndarray, conv: bool) -> list[np.ndarray]:
    """q: weights with the output-channel axis first, (C, ...) -> (C, K) views in each order a kernel pairs."""
    c = q.shape[0]
    views = [q.reshape(c, -1)]
    if conv and q.ndim == 4:
        views.append(q.transpose(0, 2, 3, 1).reshape(c, -1))
    return views


def saturating_channels(q: np.ndarray, conv: bool) -> np.ndarray:
    """bool (C,): output channels of int8 weights q (C, ...) holding a same-signed neighbour pair whose
    magnitudes sum to more than PAIR_LIMIT."""
    bad = np.zeros(q.shape[0], bool)
    for k in _flattenings(q.astype(np.int32), conv):
        if k.shape[1] % 2:
            k = np.pad(k, ((0, 0), (0, 1)))
        a, b = k[:, 0::2], k[:, 1::2]
        bad |= ((a * b > 0) & (np.abs(a) + np.abs(b) > PAIR_LIMIT)).any(axis=1)
    return bad


def pair_safe_requantize(q: np.ndarray, scale: np.ndarray, conv: bool) -> tuple[np.ndarray, np.ndarray]:
    """(new int8 weights (C, ...), factor float32 (C,)) for channel-first int8 weights q and per-channel
    scales (C,): channels with a saturating pair are requantized from q * scale at scale * t, with the
    smallest t on a 0.5% grid that leaves no such pair."""
    q = q.copy()
    factor = np.ones(q.shape[0], np.float32)
    todo = np.flatnonzero(saturating_channels(q, conv))
    w = q[todo].astype(np.float32) * scale[todo].reshape(-1, *[1] * (q.ndim - 1))
    for t in np.arange(1.0 + _FACTOR_STEP, _MAX_FACTOR + 1e-9, _FACTOR_STEP):
        if not len(todo):
            break
        s = (scale[todo] * t).reshape(-1, *[1] * (q.ndim - 1))
        cand = np.clip(np.round(w / s), -127, 127).astype(np.int8)
        ok = ~saturating_channels(cand, conv)
        q[todo[ok]], factor[todo[ok]] = cand[ok], t
        todo, w = todo[~ok], w[~ok]
    if len(todo):  # unreachable: at t = 2 every |w| <= 64
        raise RuntimeError(f"{len(todo)} channels still saturate at scale factor {_MAX_FACTOR}")
    return q, factor


def _attr(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def plan_updates(model) -> list[WeightUpdate]:
    """The WeightUpdate of every quantized weight of a QDQ `onnx.ModelProto` that has a saturating pair."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    updates = []
    for dq in g.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        users = [n for n, i in consumers.get(dq.output[0], []) if i == 1 and n.op_type in _WEIGHT_OPS]
        if q.dtype != np.int8 or not users:
            continue
        conv = users[0].op_type == "Conv"
        if conv and _attr(users[0], "group", 1) != 1:
            continue  # grouped/depthwise convolutions use an int32 kernel
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        axis = _attr(dq, "axis", 1) % q.ndim if scale.ndim else 0
        qc = np.moveaxis(q, axis, 0) if scale.ndim else q.reshape(1, -1)
        sc = scale.reshape(-1) if scale.ndim else np.full(1, float(scale), np.float32)
        new_q, factor = pair_safe_requantize(qc, sc, conv)
        changed = int((factor != 1).sum())
        if not changed:
            continue
        arrays = [
            (dq.input[0], np.ascontiguousarray(np.moveaxis(new_q, 0, axis) if scale.ndim else new_q.reshape(q.shape))),
            (dq.input[1], (sc * factor).reshape(scale.shape).astype(np.float32)),
        ]
        for user in users:
            bias_dq = producer.get(user.input[2]) if len(user.input) > 2 else None
            if bias_dq is None or bias_dq.op_type != "DequantizeLinear" or bias_dq.input[0] not in inits:
                continue
            # An int32 bias is quantized at input scale x weight scale: it follows the weight's new scale.
            bq = numpy_helper.to_array(inits[bias_dq.input[0]]).astype(np.float64)
            bs = numpy_helper.to_array(inits[bias_dq.input[1]]).astype(np.float32)
            f = factor if bs.ndim else factor.reshape(())
            arrays += [(bias_dq.input[0], np.round(bq / f).astype(np.int32)), (bias_dq.input[1], (bs * f).astype(np.float32))]
        updates.append(WeightUpdate(dq.input[0], users[0].name, tuple(arrays), changed))
    return updates


def apply_updates(model, updates: list[WeightUpdate]) -> None:
    """Write `updates` into the initializers of `model` (an onnx.ModelProto, changed in place)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for u in updates:
        for name, arr in u.arrays:
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))


def count_saturating_pairs(model) -> int:
    """Number of output channels, over every quantized non-depthwise weight of `model`, that hold a
    saturating pair (0 for a file made pair-safe)."""
    return sum(u.channels for u in plan_updates(model))
