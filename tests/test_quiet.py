"""Quiet by default: a third-party warning goes to the log, not the terminal; -v shows it."""

import logging
import os
import subprocess
import sys

SCRIPT = """
import sys, warnings, logging
from imprinting.cli import main
sys.argv = ["imprint", *sys.argv[1:]]
def noisy(args):
    warnings.warn("a FutureWarning nobody can act on", FutureWarning)
    logging.getLogger("torch.onnx._internal.exporter").warning("torchvision is not installed")
    return 0
import imprinting.cli as c
parser = c.build_parser
def build():
    p = parser()
    sub = next(a for a in p._actions if a.dest == "command" or a.__class__.__name__ == "_SubParsersAction")
    sub.add_parser("noisy").set_defaults(func=noisy)
    return p
c.build_parser = build
sys.exit(main())
"""


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=60)


def test_third_party_warnings_are_quiet_by_default_and_shown_with_verbose():
    quiet = run("noisy")
    assert quiet.returncode == 0 and "FutureWarning" not in quiet.stderr and "torchvision" not in quiet.stderr
    loud = run("noisy", "-v")
    assert loud.returncode == 0 and "FutureWarning" in loud.stderr and "torchvision" in loud.stderr


def test_quiet_sets_the_environment_the_converters_read(monkeypatch):
    from imprinting.quiet import quiet_third_parties

    for k in ("TORCH_LOGS", "TF_CPP_MIN_LOG_LEVEL"):
        monkeypatch.delenv(k, raising=False)
    level = logging.getLogger("torch").level
    try:
        quiet_third_parties()
        assert os.environ["TORCH_LOGS"] == "-all" and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        assert logging.getLogger("torch").level == logging.ERROR
    finally:
        logging.getLogger("torch").setLevel(level)
        logging.captureWarnings(False)


def _tflite_bundle(directory):
    """A bundle whose one extractor is a TFLite file (the tiny backbone, converted with litert-torch)."""
    from _export_helpers import tiny_extractor

    from imprinting.export._tflite import convert_tflite_fp32
    from imprinting.runtime.bundle import ExtractorEntry, Manifest, file_sha256, write_manifest
    from imprinting.runtime.preprocess import PreprocessSpec

    directory.mkdir(parents=True)
    path = directory / "extractor_fp32.tflite"
    convert_tflite_fp32(tiny_extractor(dim=16), path, 64)
    sha = file_sha256(path)
    write_manifest(directory, Manifest(
        name="tiny-tflite", embedding_dim=16, scale=10.0, fingerprint=f"sha256:{sha}",
        preprocess=PreprocessSpec(input_size=64, resize_size=72),
        extractors=(ExtractorEntry(file=path.name, format="tflite", precision="fp32", layout="NHWC", sha256=sha,
                                   normalized=True),)))
    return directory


def test_tflite_classify_prints_nothing_on_stderr_unless_verbose(tmp_path, image_files):
    """LiteRT writes 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' straight to fd 2 at every
    interpreter; the `imprint` command holds it back unless -v."""
    import pytest

    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    bundle = _tflite_bundle(tmp_path / "bundle")
    store = str(tmp_path / "s.npz")
    cmd = [sys.executable, "-m", "imprinting.cli"]
    env = {**os.environ, "IMPRINT_CHECK_CACHE": "off"}

    def imprint(*args):
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)

    learned = imprint("learn", str(bundle), "--store", store, "--label", "red", *map(str, image_files["red"][:2]))
    assert learned.returncode == 0 and learned.stderr == "", learned.stderr
    res = imprint("classify", str(bundle), "--store", store, "--format", "tflite", str(image_files["red"][3]))
    assert res.returncode == 0 and "red" in res.stdout
    assert res.stderr == "", res.stderr
    loud = imprint("-v", "classify", str(bundle), "--store", store, str(image_files["red"][3]))
    assert loud.returncode == 0 and "XNNPACK" in loud.stderr


def test_native_notices_are_held_back_and_other_lines_passed_on(capfd):
    from imprinting.quiet import native_notices_quiet

    with native_notices_quiet():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nsomething that matters\n")
    assert capfd.readouterr().err == "something that matters\n"


def test_quiet_turns_off_litert_torch_progress_and_opencv_warnings(monkeypatch):
    from imprinting.quiet import quiet_third_parties

    for k in ("LITERT_TORCH_SHOW_PROGRESS", "OPENCV_LOG_LEVEL"):
        monkeypatch.delenv(k, raising=False)
    try:
        quiet_third_parties()
        assert os.environ["LITERT_TORCH_SHOW_PROGRESS"] == "n" and os.environ["OPENCV_LOG_LEVEL"] == "ERROR"
    finally:
        logging.captureWarnings(False)


def test_a_missing_webcam_is_one_line_without_opencv_warnings(tmp_path, tiny_bundle):
    """`--source 0` with no camera: OpenCV's '[ WARN:0@0.01] ... can't open camera by index' lines only with -v."""
    import pytest

    pytest.importorskip("cv2")
    if os.path.exists("/dev/video0"):
        pytest.skip("this machine has a camera 0")
    cmd = [sys.executable, "-m", "imprinting.cli", "camera", str(tiny_bundle), "--store", str(tmp_path / "s.npz"),
           "--source", "0", "--api-port", "-1", "--no-stdin"]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert quiet.returncode == 1 and "WARN" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1].startswith("imprint: error: cannot open video source 0")
