"""The command line's door to engines and accelerators: --format rknn, --engine/--openvino-device, --providers,
--delegate become ExtractorOptions, each implying the one file format it runs, and conflicts are refused."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.util import find_spec

import pytest

from imprinting.runtime.cli_options import model_args, recognizer_options


def _options(*argv: str):
    p = argparse.ArgumentParser()
    model_args(p, store=None)
    return recognizer_options(p.parse_args(["bundle", *argv]))


def test_engine_options_reach_the_extractor_and_imply_their_format():
    o = _options()
    assert o.format is None and o.extractor.engine is None and o.extractor.providers is None
    o = _options("--engine", "openvino", "--openvino-device", "GPU")
    assert (o.format, o.extractor.engine, o.extractor.openvino_device) == ("onnx", "openvino", "GPU")
    o = _options("--providers", "XNNPACKExecutionProvider, CPUExecutionProvider")
    assert o.format == "onnx" and o.extractor.providers == ("XNNPACKExecutionProvider", "CPUExecutionProvider")
    o = _options("--delegate", "/usr/lib/libedgetpu.so.1", "--precision", "int8")
    assert (o.format, o.precision, o.extractor.delegate) == ("tflite", "int8", "/usr/lib/libedgetpu.so.1")
    assert _options("--format", "rknn").format == "rknn"
    assert _options("--format", "onnx", "--engine", "onnxruntime").format == "onnx"


@pytest.mark.parametrize("argv, message", [
    (("--engine", "openvino", "--format", "tflite"), "--engine openvino, --format tflite ask for different"),
    (("--providers", "CPUExecutionProvider", "--delegate", "x.so"), "--delegate, --providers ask for different"),
    (("--delegate", "x.so", "--format", "rknn"), "--delegate, --format rknn ask for different"),
])
def test_engine_options_that_ask_for_different_formats_are_refused(argv, message):
    with pytest.raises(ValueError, match=message):
        _options(*argv)


@pytest.mark.skipif(not find_spec("onnxruntime"), reason="needs onnxruntime")
def test_a_provider_this_onnxruntime_lacks_is_one_line_from_the_command(tiny_bundle, tmp_path, image_files):
    res = subprocess.run([sys.executable, "-m", "imprinting.cli", "learn", str(tiny_bundle), "--store",
                          str(tmp_path / "s.npz"), "--label", "red", str(image_files["red"][0]), "--providers",
                          "NoSuchExecutionProvider"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("imprint: error: ") and "NoSuchExecutionProvider" in res.stderr, res.stderr
