"""`imprint demo`: the main job from a fresh clone.

It exports the default ImageNet-pretrained bundle if it is not there, then runs the camera loop: the live
one when a webcam opens, otherwise a simulated camera over real photos that teaches each object from a
single frame and then reports, for the frames that follow, recognition accuracy, unknown rate and FPS.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from imprinting import simcam
from imprinting.runtime import ExtractorOptions, Recognizer, RecognizerOptions, UnknownPolicy
from imprinting.runtime.events import Event, Prediction, Taught
from imprinting.runtime.loop import CameraLoop, LoopOptions
from imprinting.runtime.sources import Source

log = logging.getLogger(__name__)
DEFAULT_BUNDLE = Path("bundles") / "lite0-imagenet"


@dataclass(frozen=True)
class DemoSummary:
    """What the simulated run measured (fractions in [0, 1])."""

    taught: tuple[str, ...]
    object_frames: int
    accuracy: float
    unknown_rate: float
    empty_frames: int
    empty_rejected: float
    fps: float
    stage_ms: dict


def scenario(seed: int, segment: int, rounds: int) -> tuple[list[tuple[int, str]], list[str | None], Iterator[np.ndarray]]:
    """(teach schedule [(frame index, label)], the truth per frame (None = empty scene), the frames)."""
    rng = np.random.default_rng(seed)
    photos = {name: simcam.sample_photo(name) for name in (*simcam.OBJECTS, simcam.EMPTY)}
    plan: list[tuple[str, int]] = [(name, 8) for name in simcam.OBJECTS]  # teach phase: 8 frames each
    for _ in range(rounds):
        order = [*simcam.OBJECTS, simcam.EMPTY]
        rng.shuffle(order)
        plan += [(name, segment) for name in order]
    schedule, truth, i = [], [], 0
    for k, (name, n) in enumerate(plan):
        if k < len(simcam.OBJECTS):
            schedule.append((i, simcam.NAMES[name]))  # taught from the segment's first frame only
        truth += [simcam.NAMES.get(name)] * n
        i += n

    def frames() -> Iterator[np.ndarray]:
        for name, n in plan:
            a, b = simcam.random_view(rng), simcam.random_view(rng)
            for j in range(n):
                yield simcam.render(photos[name], simcam.pan(a, b, j / max(n - 1, 1)), rng)

    return schedule, truth, frames()


def run_simulation(recognizer: Recognizer, seed: int = 0, segment: int = 40, rounds: int = 3,
                   smoothing: int = 5, on_event=None) -> DemoSummary:
    """Teach each object from one simulated frame, then score the following frames."""
    schedule, truth, frames = scenario(seed, segment, rounds)
    teach_at = dict(schedule)
    preds: list[str | None] = []
    source = Source("simulated camera", frames, "RGB", live=False)
    loop = CameraLoop(recognizer, source, LoopOptions(smoothing=smoothing, teach_frames=1), on_event=on_event)

    def on_frame(_frame: np.ndarray, event: Prediction) -> None:
        preds.append(event.label)
        nxt = event.frame + 1
        if nxt in teach_at:
            loop.teach(teach_at[nxt], 1)

    loop.on_frame = on_frame
    loop.teach(teach_at[0], 1)
    stats = loop.run()
    test_start = len(simcam.OBJECTS) * 8
    obj = empty = 0
    right = unknown = rejected = 0
    for i in range(test_start, len(preds)):
        if (i - test_start) % segment < smoothing:
            continue  # the vote needs a few frames after the scene changes
        if truth[i] is None:
            empty += 1
            rejected += preds[i] is None
        else:
            obj += 1
            right += preds[i] == truth[i]
            unknown += preds[i] is None
    return DemoSummary(
        taught=tuple(label for _, label in schedule), object_frames=obj, accuracy=right / max(obj, 1),
        unknown_rate=unknown / max(obj, 1), empty_frames=empty, empty_rejected=rejected / max(empty, 1),
        fps=stats.fps, stage_ms={k: v for k, v in stats.to_dict().items() if k.endswith("_ms") and v is not None},
    )


def ensure_bundle(path: Path) -> Path:
    """Export the default pretrained bundle to `path` unless a bundle is there already."""
    if (path / "manifest.json").is_file():
        return path
    try:
        import imprinting.export.exporters  # noqa: F401  (torch and the converters)
    except ImportError as err:
        raise ImportError(f"{path} has no bundle and the training side is not installed to export one "
                          f"(pip install 'imprinting[export]'): {err}") from None
    from imprinting.cli import main

    print(f"exporting the ImageNet-pretrained EfficientNet-Lite0 bundle to {path} (once; later runs reuse "
          "it)...", file=sys.stderr)
    t0 = time.perf_counter()
    if main(["export", "--out", str(path), "--formats", "onnx", "--name", "lite0-imagenet"]) != 0:
        raise RuntimeError(f"exporting the default bundle to {path} failed (see the message above)")
    print(f"exported {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: export the default bundle if needed, then teach and recognize")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help=f"bundle directory (default {DEFAULT_BUNDLE})")
    p.add_argument("--source", help="a camera index or video; default: webcam 0 if it opens, else a simulated camera")
    p.add_argument("--store", type=Path, help="class store for the live loop (default: BUNDLE/../demo_classes.npz)")
    p.add_argument("--simulate", action="store_true", help="use the simulated camera even if a webcam is present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-cosine", type=float, default=None,
                   help="'unknown' below this cosine (default: the bundle's calibrated threshold)")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_demo)


def _webcam_opens(source: str) -> bool:
    if source.isdigit() and sys.platform.startswith("linux") and not Path(f"/dev/video{source}").exists():
        return False  # no device node: skip OpenCV's noisy probe
    try:
        import cv2
    except ImportError:
        return False
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    return bool(ok)


def cmd_demo(args: argparse.Namespace) -> int:
    bundle = ensure_bundle(args.bundle)
    source = args.source or "0"
    if not args.simulate and (args.source or _webcam_opens(source)):
        from imprinting.runtime.camera_cli import add_camera_parser, cmd_camera

        parser = argparse.ArgumentParser()
        add_camera_parser(parser.add_subparsers())
        store = args.store or bundle.parent / "demo_classes.npz"
        from imprinting.runtime._deps import window_problem

        problem = window_problem()
        argv = ["camera", str(bundle), "--store", str(store), "--source", source, *([] if problem else ["--show"])]
        if not source.isdigit():
            argv.append("--realtime")  # a video plays as a camera would, so teaching sees what is on screen
        if problem:
            print(f"no window ({problem}); events are printed instead. Type commands: teach LABEL, list, quit",
                  file=sys.stderr)
        else:
            print("live camera: press t to teach what it sees, q to quit (or type commands: teach LABEL)", file=sys.stderr)
        return cmd_camera(parser.parse_args(argv))
    unknown = None if args.min_cosine is None else UnknownPolicy(min_cosine=args.min_cosine)
    options = RecognizerOptions(extractor=ExtractorOptions(threads=args.threads), unknown=unknown)
    with Recognizer.open(bundle, None, options) as r:
        print(f"no webcam: a simulated camera pans over {len(simcam.OBJECTS)} photos; teaching each from ONE frame "
              f"({r.extractor_file.file}, unknown below cosine {r.unknown.min_cosine:.2f})")

        def show(event: Event) -> None:
            if isinstance(event, Taught):
                print(f"  taught {event.label!r} from {event.frames} frame")

        summary = run_simulation(r, seed=args.seed, on_event=show)
    print(f"recognition accuracy {summary.accuracy:.1%} over {summary.object_frames} frames of taught objects "
          f"(unknown {summary.unknown_rate:.1%})")
    print(f"empty scene reported unknown in {summary.empty_rejected:.1%} of {summary.empty_frames} frames")
    stages = ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in summary.stage_ms.items())
    print(f"{summary.fps:.0f} FPS end to end ({stages})")
    return 0
