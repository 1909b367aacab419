"""Runs inside the RKNN tool environment (rknn_env.py), never in the project's own: rknn-toolkit2 pins numpy
<= 1.26.4 and onnx <= 1.18. It imports only numpy and rknn.api, and talks through files:

    python rknn_tool.py --onnx extractor_fp32.onnx --out extractor_int8.rknn --target rk3588 --input images \
        --calib calib.npy --inputs probes.npy --outputs out.npy

calib.npy: float32 (N, 3, S, S), the preprocessed calibration inputs (NCHW, as the runtime feeds the file);
inputs.npy: float32 (M, 3, S, S) to run through the simulator after the build; out.npy: float32 (M, D), their
raw outputs. The graph is quantized to int8 with no normalization of its own (mean 0, std 1): the runtime's
preprocessing is the same for every file. Prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np


def _check(ret: int, what: str) -> None:
    if ret != 0:
        raise SystemExit(f"rknn-toolkit2: {what} failed (status {ret}); its log is above")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--input", required=True, help="the ONNX graph's input name")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--outputs", required=True)
    args = ap.parse_args(argv)
    from rknn.api import RKNN

    calib = np.load(args.calib, allow_pickle=False)
    inputs = np.load(args.inputs, allow_pickle=False)
    size = int(calib.shape[2])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, x in enumerate(calib):  # the toolkit's dataset: a text file naming one .npy per input
            names.append(os.path.join(tmp, f"{i}.npy"))
            np.save(names[-1], x[None].astype(np.float32))
        dataset = os.path.join(tmp, "dataset.txt")
        with open(dataset, "w") as f:
            f.write("\n".join(names) + "\n")
        rknn = RKNN(verbose=False)
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines; stdout carries the JSON only
            _check(rknn.config(mean_values=[[0, 0, 0]], std_values=[[1, 1, 1]], target_platform=args.target), "config")
            _check(rknn.load_onnx(args.onnx, inputs=[args.input], input_size_list=[[1, 3, size, size]]), "load_onnx")
            _check(rknn.build(do_quantization=True, dataset=dataset), "build")
            _check(rknn.export_rknn(args.out), "export_rknn")
            build_s = time.perf_counter() - t0
            # The simulator runs the model built in this session (after load_rknn it returns no outputs).
            _check(rknn.init_runtime(), "init_runtime (simulator)")
            outs = []
            for x in inputs:
                y = rknn.inference(inputs=[x[None].astype(np.float32)], data_format=["nchw"])
                if not y or y[0] is None:
                    raise SystemExit("rknn-toolkit2: the simulator returned no output")
                outs.append(np.asarray(y[0], np.float32).reshape(-1))
        rknn.release()
    np.save(args.outputs, np.stack(outs))
    print(json.dumps({"target": args.target, "calibration_inputs": len(calib), "inputs": len(inputs),
                      "build_s": round(build_s, 1), "simulate_s": round(time.perf_counter() - t0 - build_s, 1),
                      "bytes": os.path.getsize(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
