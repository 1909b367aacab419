"""What the latency numbers depend on: CPU model, cores, instruction-set features, governor, clock,
temperature, and a peak multiply-accumulate rate estimated from them."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from imprinting.runtime.host import cpuinfo_fields, host_info, library_versions


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def device_info() -> dict:
    """A JSON-ready description of this machine (Linux /proc and /sys; other systems give less)."""
    host = host_info()
    mhz = cpuinfo_fields().get("cpu mhz")
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    ghz = int(max_khz) / 1e6 if max_khz else (float(mhz) / 1000 if mhz else None)
    return {
        "cpu": host["cpu"],
        "arch": host["arch"],
        "cores": os.cpu_count(),
        "features": host["features"],
        "ghz": ghz,
        "governor": governor,
        "temperature_c": int(temp) / 1000 if temp and temp.lstrip("-").isdigit() else None,
        "python": platform.python_version(),
        "os": platform.platform(),
        "int8_kernels": host["int8_kernels"],
        "versions": library_versions(),
    }


def peak_gmacs(info: dict, threads: int, int8: bool) -> float | None:
    """Peak GMAC/s for `threads` cores: FMA lanes x FMA units x clock (an estimate; 2 FMA units assumed).

    fp32: 16 lanes (AVX-512), 8 (AVX2/FMA), 4 (NEON). int8 with a dot-product instruction (VNNI, ASIMDDP)
    does 4 MACs per fp32 lane, else 2 (pairwise multiply-add).
    """
    ghz = info.get("ghz")
    if not ghz:
        return None
    f = set(info["features"])
    lanes = 16 if "avx512f" in f else 8 if ("avx2" in f or "fma" in f) else 4
    per_lane = (4 if f & {"avx512_vnni", "avx_vnni", "asimddp"} else 2) if int8 else 1
    return threads * ghz * 2 * lanes * per_lane


def onnx_macs(path: str | os.PathLike[str]) -> int | None:
    """Multiply-accumulates of one image through an fp32 ONNX graph (Conv, MatMul, Gemm).

    Output shapes come from running the graph once with every such node's output exposed: static shape
    inference cannot see through the dynamic "SAME" padding of the exported graph.
    """
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None
    model = onnx.load(str(path))
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and n.input[1] in inits]
    have = {o.name for o in model.graph.output}
    for n in nodes:
        if n.output[0] not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.output[0]))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: np.zeros(shape, np.float32)})))
    total = 0
    for n in nodes:
        w, out = inits[n.input[1]], outs[n.output[0]].shape
        if n.op_type == "Conv":  # weights (Cout, Cin/groups, kh, kw)
            total += int(np.prod(out)) * w[1] * w[2] * w[3]
        else:
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            total += int(np.prod(out)) * (w[1] if trans_b else w[0])
    return total or None


def scale_reference(reference: dict, target: dict) -> list[tuple[str, float, float]]:
    """(configuration, reference ms, estimated ms on `target`) for each ok result of a latency reference,
    scaled by the ratio of peak MAC rates (peak_gmacs) at the same thread count and precision.

    This assumes both machines reach the same fraction of their peak; it is an estimate to plan with, not a
    measurement (emulation cannot time a CPU, and none of these targets was at hand)."""
    out = []
    for r in reference["results"]:
        if r.get("status") != "ok" or r.get("backend") == "torch":
            continue
        int8 = r["precision"] == "int8"
        ref_peak = peak_gmacs(reference["device"], r["threads"], int8)
        tgt_peak = peak_gmacs(target, r["threads"], int8)
        if ref_peak and tgt_peak:
            ms = r["stages"]["extract"]["median"]
            out.append((r["name"], ms, ms * ref_peak / tgt_peak))
    return out


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Estimate extractor latency on another CPU from a latency reference.")
    ap.add_argument("reference", help="a latency JSON from benchmarks/latency.py (benchmarks/reference/...)")
    ap.add_argument("--ghz", type=float, required=True, help="the target's clock")
    ap.add_argument("--features", nargs="*", default=[], help="its SIMD flags: asimd, asimddp, avx2, ...")
    args = ap.parse_args()
    ref = json.loads(Path(args.reference).read_text())
    print(f"| configuration | reference ms ({ref['device']['cpu']}) | estimate ms ({args.ghz} GHz, "
          f"{' '.join(args.features) or 'no SIMD flags'}) |\n|---|---:|---:|")
    for name, ms, est in scale_reference(ref, {"ghz": args.ghz, "features": args.features}):
        print(f"| {name} | {ms:.2f} | {est:.1f} |")
