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
