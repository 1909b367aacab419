"""The README runs: every command of every ```sh block in README.md and docs/raspberry-pi.md is either run
here, on small data in a scratch folder laid out as the README assumes (photo files, class folders, a video),
or listed in SKIPPED with the reason CI cannot run it. A new command that is neither fails
test_every_readme_command_is_run_or_listed.

How a command is run: `imprint ...` through this interpreter (export and train with a tiny random-weight
backbone in place of EfficientNet-Lite0, so that a bundle exports in seconds; see RUNNER), `python ...` with the
repository's script, `curl ...` with curl against a camera loop started on a free port instead of 8765. A few
commands get arguments appended so that they end, stay small or do not collide with other runs: EXTRA says which
and why. `> FILE` redirects stdout as the shell would. The README's ```python block runs as written (test_python_example).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tiny import pattern_image, write_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "raspberry-pi.md")

# Commands that need what CI lacks, each with its reason (never silently dropped).
SKIPPED = {
    "make demo": "exports the full EfficientNet-Lite0 bundle (minutes); tests/test_demo.py runs `imprint demo --simulate`",
    "make test": "the suite this test is part of",
    "python3 -m venv .venv && .venv/bin/pip install pip==26.3": "installs the environment this suite runs in (make test does)",
    ".venv/bin/pip install -c constraints.txt torch": "installs the environment this suite runs in (make test does)",
    ".venv/bin/pip install -c constraints.txt -e .[onnx,tflite,camera,export,dev]":
        "installs the environment this suite runs in (make test does)",
    "imprint train --cub ../shared/data/CUB_200_2011 --out runs/cub-d1280.pt":
        "needs CUB-200-2011 and 18 min of feature extraction; the same path runs on my_photos/ here",
    "imprint train --cub ../shared/data/CUB_200_2011 --out runs/cub-b2.pt --dim 0 --blocks 2":
        "needs CUB-200-2011 (minutes); --blocks is run by tests/test_train.py::test_middle_path_fine_tunes_only_the_last_blocks",
    "torchrun --standalone --nproc_per_node=2 -m imprinting.cli train --folder my_photos/ --out runs/b2.pt --blocks 2":
        "several processes of full EfficientNet-Lite0 blocks; tests/test_train.py::"
        "test_middle_path_runs_data_parallel_under_torchrun (slow) runs it",
    "imprint camera bundle --store classes.npz --source 0 --show": "needs a webcam and a window",
    "imprint camera bundle --store classes.npz --source picamera2": "needs a Raspberry Pi camera",
    "imprint camera bundle --store classes.npz --source 0": "needs a webcam",
    "python benchmarks/classifier_speed.py": "a timing sweep to 100,000 classes (2 min here); "
        "tests/test_benchmarks.py runs it at 100 classes",
    "python benchmarks/camera_loop.py bundle --soak 100000": "a soak of 100,000 frames (minutes)",
    "python benchmarks/latency.py bundle": "times every configuration in fresh processes (1.5 min on the tiny "
        "bundle); tests/test_benchmarks.py runs it with --runs 5",
    "python benchmarks/latency.py bundle --compare benchmarks/reference/latency-x86-vnni-amx-2core.json":
        "as above; tests/test_benchmarks.py runs --compare",
    "python benchmarks/cub.py --root CUB_200_2011 --bundle bundle": "needs CUB-200-2011 (hours)",
    "bash scripts/cub_results.sh CUB_200_2011": "needs CUB-200-2011 (hours)",
    "python benchmarks/open_set.py --root CUB_200_2011 --bundle bundle": "needs CUB-200-2011 (hours)",
    "python benchmarks/unknown_level.py --root CUB_200_2011 --bundle bundle":
        "needs CUB-200-2011 (tests/test_benchmarks.py runs its trials on generated clusters)",
    "sudo apt update": "a Raspberry Pi's system setup",
    "sudo apt install -y git python3-venv python3-picamera2": "a Raspberry Pi's system setup",
    "git clone <this repository> imprinting && cd imprinting": "a Raspberry Pi's system setup",
    "python3 -m venv --system-site-packages ~/imprint-venv": "a Raspberry Pi's system setup",
    ". ~/imprint-venv/bin/activate": "a Raspberry Pi's system setup",
    "pip install -c constraints.txt .[onnx]": "a Raspberry Pi's system setup (scripts/check_aarch64.sh installs "
        "the same wheels under qemu, make check-aarch64)",
    "scp -r bundle pi@raspberrypi.local:imprinting/": "needs a Raspberry Pi on the network",
}

# The same command as one that runs (a second export of the plain pretrained extractor into another folder):
# the recipes then use a copy of what that one wrote.
SAME_AS = {"imprint export --out bundle": "imprint export --out bundles/lite0-imagenet"}

TRAIN = [
    "imprint export --out bundles/lite0-imagenet",
    "imprint train --folder my_photos/ --out runs/base.pt --dim 1280",
    "imprint export --checkpoint runs/base.pt --out bundles/base --calib-dir my_photos/",
    "imprint doctor bundles/lite0-imagenet",
    "imprint doctor bundles/lite0-imagenet --json > doctor-$(hostname).json",
]
RECIPES = [
    "imprint info bundle",
    "imprint learn bundle --store classes.npz --label mug mug1.jpg mug2.jpg",
    "imprint learn bundle --store classes.npz --label cat cat.jpg",
    "imprint learn bundle --store classes.npz --label book book.jpg",
    "imprint classify bundle --store classes.npz photo1.jpg photo2.jpg --top-k 3 --json",
    "imprint classify bundle --store classes.npz photo.jpg --min-cosine 0.5",
    "imprint classify bundle --store classes.npz photo.jpg --explain",
    "imprint learn bundle --store classes.npz --folders my_photos/",
    "imprint classify bundle --store classes.npz new_photos/ --csv > answers.csv",
    "imprint eval bundle --folders my_photos/ --shots 3 --plot confusion.png",
    "imprint classes list --store classes.npz",
    "imprint classes rename --store classes.npz book notebook",
    "imprint classes remove --store classes.npz cat",
    "imprint classes export --store robot1.npz --label mug --out mug.npz",
    "imprint classes import --store robot2.npz mug.npz",
    "imprint classes merge robot1.npz robot2.npz --out fleet.npz",
    "imprint refine bundle --store classes.npz",
    "imprint camera bundle --store classes.npz --source clip.mp4 --realtime --loop",
    "imprint camera bundle --store classes.npz --source photos/",
]
HTTP = [
    'curl -X POST localhost:8765/teach -d {"label": "mug", "frames": 5}',
    "curl -X POST localhost:8765/teach?label=mug --data-binary @mug.jpg",
    "curl localhost:8765/prediction",
    "curl localhost:8765/classes",
    "curl localhost:8765/stats",
    "curl -X POST localhost:8765/undo",
    'curl -X POST localhost:8765/rename -d {"old": "mug", "new": "cup"}',
    "curl -X DELETE localhost:8765/classes/cup",
    "curl localhost:8765/store -o robot.npz",
    "curl -X POST localhost:8765/store/merge --data-binary @phone.npz",
]
SCRIPTS = [
    "python benchmarks/isa_parity.py bundle",
    "python benchmarks/folder_workflow.py bundle",
    "python benchmarks/device.py benchmarks/reference/latency-x86-vnni-amx-2core.json --ghz 1.8 --features asimd",
    "python benchmarks/device.py benchmarks/reference/latency-x86-vnni-amx-2core.json --ghz 2.4 --features asimd asimddp",
]

# Arguments appended to a command that runs, and why.
EXTRA = {
    # the tiny backbone's int8 TFLite file cannot be calibrated (tests/test_export_formats.py converts TFLite)
    "imprint export --out bundles/lite0-imagenet": ["--formats", "onnx"],
    "imprint export --checkpoint runs/base.pt --out bundles/base --calib-dir my_photos/": ["--formats", "onnx"],
    # 4 classes of 5 photos: the epoch search stops at 5 epochs instead of 30
    "imprint train --folder my_photos/ --out runs/base.pt --dim 1280": ["--max-epochs", "5"],
    # a looping video runs until `q` or Ctrl-C: stop after 20 frames; no API port, so parallel runs cannot collide
    "imprint camera bundle --store classes.npz --source clip.mp4 --realtime --loop":
        ["--max-frames", "20", "--api-port", "-1"],
    "imprint camera bundle --store classes.npz --source photos/": ["--api-port", "-1"],
    # the status of every answer, and curl's errors, are what is checked
    **{c: ["-sS", "--fail-with-body"] for c in HTTP},
    # a scratch folder for the report instead of benchmarks/results; 4 probe images instead of 16, and one
    # emulated CPU (AVX2 without VNNI) instead of two
    "python benchmarks/isa_parity.py bundle": ["--images", "4", "--cpus", "Haswell", "--out", "isa_parity"],
}

# What libraries print by themselves: LiteRT's and absl's notices, OpenCV's warnings, LiteRT-Torch's progress.
THIRD_PARTY = re.compile(r"^(INFO: |WARNING: All log|\[ ?(WARN|INFO|ERROR)|[IWE]\d{4} \d\d:\d\d|\(\d\d:\d\d\) \[)", re.M)

# `imprint export` and `imprint train` build EfficientNet-Lite0; here they build the tests' tiny backbone.
RUNNER = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
if sys.argv[1:2] in (["export"], ["train"]):
    import imprinting.export.model as model
    from _export_helpers import TinyBackbone
    model.efficientnet_lite0 = lambda pretrained=True: TinyBackbone()
from imprinting.cli import main
sys.exit(main(sys.argv[1:]))
"""


def sh_commands(path: Path) -> list[str]:
    """Every command line of the ```sh blocks of a Markdown file, comments dropped, words joined by spaces."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", path.read_text(), re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
    return commands


def _words(command: str) -> list[str]:
    """The words of a README command as the shell splits them (the README's own quoting)."""
    for doc in DOCS:
        for block in re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.S | re.M):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                if " ".join(words) == command:
                    return words
    raise AssertionError(f"not in the docs any more: {command}")


def test_every_readme_command_is_run_or_listed():
    for doc in DOCS:  # a recipe cannot hide in a block marked otherwise
        kinds = set(re.findall(r"^```(\w+)", doc.read_text(), re.M))
        assert kinds <= {"sh", "python"}, f"{doc.name}: shell blocks are marked sh: {sorted(kinds)}"
    documented = {c for doc in DOCS for c in sh_commands(doc)}
    run = [*TRAIN, *RECIPES, *HTTP, *SCRIPTS]
    assert len(run) == len(set(run)), "a command is run twice"
    listed = set(run) | set(SKIPPED) | set(SAME_AS)
    assert not set(run) & set(SKIPPED), "a command is both run and skipped"
    assert sorted(documented - listed) == [], "new README commands: run them here or list them in SKIPPED"
    assert sorted(listed - documented) == [], "no longer in the README: drop them here"
    assert set(SAME_AS.values()) <= set(run) and set(EXTRA) <= set(run)


def _tiny_bundle(path: Path) -> Path:
    """The tests' tiny ONNX bundle (skips where onnx or onnxruntime is not installed)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return write_tiny_bundle(path)


def _image(path: Path, kind: int, seed: int, size: int = 96) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.resize(pattern_image(kind, seed), (size, size), interpolation=cv2.INTER_NEAREST)
    assert cv2.imwrite(str(path), img[..., ::-1])
    return path


def _layout(root: Path) -> Path:
    """The files the README's recipes name: photos, one folder per class, a folder to classify, a video."""
    import cv2

    for k, name in enumerate(["mug", "cat", "book", "ball"]):
        for s in range(5):
            _image(root / "my_photos" / name / f"{s}.jpg", k, s)
    for name, k, s in [("mug", 0, 13), ("mug1", 0, 10), ("mug2", 0, 11), ("cat", 1, 10), ("book", 2, 10), ("photo1", 0, 12),
                       ("photo2", 1, 12), ("photo", 2, 12)]:
        _image(root / f"{name}.jpg", k, s)
    for k in range(4):
        _image(root / "new_photos" / f"{k}.jpg", k, 20)
        _image(root / "photos" / f"{k}.png", k, 21)
    video = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (96, 96))
    assert video.isOpened()
    for i in range(30):
        video.write(cv2.resize(pattern_image(i // 10, i), (96, 96))[..., ::-1])
    video.release()
    return root


def run(command: str, cwd: Path, substitute: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    """Run one README command in `cwd` as described at the top; fails with its output unless it exits 0."""
    words = [w.replace("$(hostname)", socket.gethostname()) for w in _words(command)]
    words = [substitute.get(w, w) for w in words] if substitute else words
    words += EXTRA.get(command, [])
    out = None
    if ">" in words:
        i = words.index(">")
        out, words = cwd / words[i + 1], words[:i] + words[i + 2:]
    if words[0] == "imprint":
        words = [sys.executable, "-c", RUNNER, *words[1:]]
    elif words[0] == "python":
        words = [sys.executable, str(ROOT / words[1]), *[str(ROOT / w) if w.startswith("benchmarks/") else w
                                                         for w in words[2:]]]
    res = subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"{command}\nexit {res.returncode}\nstdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
    if command.startswith("imprint"):  # quiet by default: no third-party line
        assert not THIRD_PARTY.search(res.stdout + res.stderr), f"{command}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    if out is not None:
        out.write_text(res.stdout)
    return res


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A scratch folder where the "Train and export" and doctor blocks ran, in the README's order."""
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    root = _layout(tmp_path_factory.mktemp("readme"))
    for command in TRAIN:
        res = run(command, root)
        (root / f"{TRAIN.index(command)}.out").write_text(res.stdout + res.stderr)
    return root


def test_train_and_export_recipes(trained):
    assert (trained / "bundles" / "lite0-imagenet" / "manifest.json").is_file()
    trained_out = (trained / "1.out").read_text()
    assert (trained / "runs" / "base.pt").is_file()  # runs/ did not exist: train made it
    # "0 epochs" is never silent: either it trained, or it says why not.
    assert "trained 0 epochs" not in trained_out or "0 epochs: on the pseudo-novel check" in trained_out
    assert "4 base classes" in (trained / "2.out").read_text()
    assert (trained / "bundles" / "base" / "manifest.json").is_file()
    doctor = next(trained.glob("doctor-*.json"))
    assert doctor.stat().st_size > 0 and doctor.read_text().lstrip().startswith("{")


@pytest.fixture
def recipes(request, tmp_path) -> Path:
    """A fresh copy of the scratch folder with `bundle` as `imprint export --out bundle` writes it (where only the
    runtime is installed: the tests' tiny bundle)."""
    pytest.importorskip("cv2")
    pytest.importorskip("matplotlib")  # eval --plot
    root = tmp_path / "w"
    try:
        import skimage  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        _tiny_bundle(_layout(root) / "bundle")
        return root
    trained = request.getfixturevalue("trained")
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("cache", "runs", "bundles", "*.out", "doctor-*"))
    shutil.copytree(trained / "bundles" / "lite0-imagenet", root / "bundle")
    return root


def test_cli_recipes(recipes):
    outputs = {}
    for command in RECIPES:
        if command.startswith("imprint classes export"):
            shutil.copy(recipes / "classes.npz", recipes / "robot1.npz")
            run("imprint learn bundle --store classes.npz --label mug mug1.jpg mug2.jpg", recipes,
                {"classes.npz": "robot2.npz", "mug1.jpg": "photo1.jpg", "mug2.jpg": "mug2.jpg"})
        outputs[command] = run(command, recipes).stdout
    answers = [json.loads(line) for line in
               outputs["imprint classify bundle --store classes.npz photo1.jpg photo2.jpg --top-k 3 --json"].splitlines()]
    assert [a["image"] for a in answers] == ["photo1.jpg", "photo2.jpg"] and len(answers[0]["categories"]) == 3
    assert (recipes / "answers.csv").read_text().count("\n") >= 4
    assert (recipes / "confusion.png").stat().st_size > 0
    assert {"fleet.npz", "mug.npz"} <= {p.name for p in recipes.iterdir()}
    listed = outputs["imprint classes list --store classes.npz"]
    assert "book" in listed and "mug" in listed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_recipes(tmp_path):
    """The curl block against `imprint camera` on a looping video, as a robot would call it."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    pytest.importorskip("cv2")
    root = _layout(tmp_path)
    _tiny_bundle(root / "bundle")
    run("imprint learn bundle --store classes.npz --label mug mug1.jpg mug2.jpg", root,
        {"classes.npz": "phone.npz", "mug": "phone"})
    port = _free_port()
    camera = subprocess.Popen(
        [sys.executable, "-m", "imprinting.cli", "camera", "bundle", "--store", "classes.npz", "--source", "clip.mp4",
         "--realtime", "--loop", "--api-port", str(port), "--events", "none", "--no-stdin"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2).read()
                break
            except OSError:
                assert camera.poll() is None and time.monotonic() < deadline, camera.stderr.read() if camera.poll() else "no API"
                time.sleep(0.2)
        answers = {}
        for command in HTTP:
            sub = {w: w.replace("localhost:8765", f"127.0.0.1:{port}") for w in _words(command) if "localhost:8765" in w}
            answers[command] = run(command, root, sub, timeout=60).stdout
    finally:
        camera.terminate()
        camera.wait(timeout=30)
    assert '"mug"' in answers["curl localhost:8765/classes"]
    assert (root / "robot.npz").stat().st_size > 0


def test_benchmark_and_device_scripts(tmp_path):
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    _tiny_bundle(tmp_path / "bundle")
    for command in SCRIPTS:  # isa_parity reports the emulated CPUs it cannot run (no qemu-user) and goes on
        run(command, tmp_path)
    assert (tmp_path / "isa_parity" / "isa_parity.md").is_file()


def test_hints_name_a_command_that_runs_here(tmp_path, monkeypatch):
    """`make demo` runs .venv/bin/imprint without activating .venv: its 'next:' hint must work as printed."""
    from imprinting.hint import imprint_command

    monkeypatch.setenv("PATH", str(tmp_path))  # no imprint on PATH
    hint = imprint_command()
    assert hint != "imprint"
    words = shlex.split(hint)
    assert subprocess.run([*words, "--version"], capture_output=True, timeout=60).returncode == 0


def test_python_example(tmp_path, monkeypatch):
    """The README's ```python block, as written, in a folder with `bundle/` and the photos it names."""
    pytest.importorskip("cv2")
    root = _layout(tmp_path)
    _tiny_bundle(root / "bundle")
    (block,) = re.findall(r"^```python\n(.*?)^```", DOCS[0].read_text(), re.S | re.M)
    monkeypatch.chdir(root)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    from imprinting.runtime import read_store

    assert "mug" in read_store(root / "classes.npz").labels
