"""The tool environment for rknn-toolkit2: a virtual environment of its own, made on first use.

rknn-toolkit2 2.5.0 pins numpy <= 1.26.4, onnx <= 1.18, protobuf <= 4.25.4 and torch <= 2.4, none of which fit
the project's environment, so it never shares it: `ensure_tool_env()` creates a venv (once; about 1.5 GB, a
minute or two) with the versions below, installs rknn-toolkit2 without its dependency pins (it runs with the
project's torch, checked: ../shared/design/FINDINGS.md), and marks it complete only when everything installed.
`export/rknn_tool.py` runs inside it; the project's code talks to it through files and one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

TOOLKIT = "rknn-toolkit2==2.5.0"
# The tested set (Python 3.11, x86_64): rknn-toolkit2's own pins where it has them, else versions that build
# against numpy 1.26. setuptools < 81 still has pkg_resources, which the toolkit imports.
PINS = ("numpy==1.26.4", "onnx==1.18.0", "protobuf==4.25.4", "onnxruntime==1.20.1", "scipy==1.13.1",
        "opencv-python-headless==4.10.0.84", "fast-histogram==0.14", "psutil==7.2.2", "ruamel.yaml==0.19.1",
        "tqdm==4.70.1", "setuptools==80.10.2")
_DONE = "imprinting-tool-env.json"


def default_tool_env() -> Path:
    """$IMPRINT_RKNN_ENV, else $XDG_CACHE_HOME/imprinting/rknn-toolkit2-2.5.0 (~/.cache when unset)."""
    if os.environ.get("IMPRINT_RKNN_ENV"):
        return Path(os.environ["IMPRINT_RKNN_ENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "imprinting" / TOOLKIT.replace("==", "-")


def _torch_pin() -> str:
    """The project's own torch (the CPU build `make setup` installed), so pip resolves it the same way."""
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def tool_python(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_tool_env(env: Path | None = None, say=log.info) -> Path:
    """The tool environment's python, creating the environment first if it is not complete. A failed or
    interrupted creation leaves nothing that looks complete: the next call starts it over."""
    env = Path(env) if env is not None else default_tool_env()
    wanted = {"toolkit": TOOLKIT, "pins": list(PINS), "torch": _torch_pin(), "python": sys.version.split()[0]}
    done = env / _DONE
    if done.is_file() and json.loads(done.read_text()) == wanted:
        return tool_python(env)
    if sys.version_info[:2] != (3, 11):
        raise ValueError(f"rknn-toolkit2 2.5.0's wheels are for Python 3.11 here; this is Python {sys.version.split()[0]}")
    say(f"creating the RKNN tool environment in {env} (once: about 1.5 GB, a minute or two)")
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(env)])
    pip = [str(tool_python(env)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, wanted["torch"], *PINS])
    _run([*pip, "--no-deps", TOOLKIT])
    env.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(wanted))
    return tool_python(env)


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise ValueError(f"creating the RKNN tool environment failed at `{' '.join(cmd[:6])} ...`: " + " | ".join(tail))


def run_tool(python: Path, args: list[str]) -> dict:
    """Run export/rknn_tool.py in the tool environment; its JSON line, or ValueError with its last lines."""
    script = Path(__file__).with_name("rknn_tool.py")
    res = subprocess.run([str(python), str(script), *args], capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise ValueError(f"rknn-toolkit2 failed (exit {res.returncode}):\n{tail}")
    log.debug("rknn-toolkit2 log:\n%s", res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])
