"""Folder workflows: photos in folders, one class per subfolder, as users keep them.

`image_files` expands files and folders (recursively) into image files; `class_folders` maps each subfolder
of a root to its images; `evaluate` teaches n shots per class (Recognizer.learn) and scores the rest. Files
that cannot be read are skipped and reported (Recognizer.embed_each), so one bad file never aborts a batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .suffixes import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from .recognizer import Recognizer

def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files among `paths`, folders searched recursively (sorted within each folder)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            out.append(p)  # a file given by name is tried whatever its suffix
    return out


def class_folders(root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """{subfolder name: its image files (recursive)} for each subfolder of `root` that holds images."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give a folder with one subfolder per class")
    classes = {d.name: image_files([d]) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    classes = {k: v for k, v in classes.items() if v}
    if not classes:
        raise ValueError(f"{root} has no subfolders with images ({', '.join(sorted(IMAGE_SUFFIXES))}); one subfolder per class")
    return classes


@dataclass(frozen=True)
class Evaluation:
    """labels (K,), confusion int (K, K+1) (rows: true class; last column: unknown, or a class not in the folder
    such as a base class), per-class accuracy, overall top-1 accuracy over the test images, the shots taught per
    class; taught_unknown: test images of taught classes called unknown (right_unknown of them had the right
    top-1 class); never_taught: the classes held out
    (never taught, --never-taught) and never_taught_unknown / never_taught_tested: how many of their images were
    called unknown, of how many (the rest got a taught class's label)."""

    labels: tuple[str, ...]
    confusion: np.ndarray
    shots: int
    failed: tuple[tuple[str, str], ...]
    taught_unknown: int = 0
    right_unknown: int = 0
    never_taught: tuple[str, ...] = ()
    never_taught_unknown: int = 0
    never_taught_tested: int = 0

    @property
    def per_class(self) -> np.ndarray:
        return np.diag(self.confusion[:, :-1]) / np.maximum(self.confusion.sum(1), 1)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion[:, :-1]) / max(self.confusion.sum(), 1))

    def open_set(self) -> dict[str, float | int | None]:
        """The unknown rates as fractions: taught test images right / wrong / unknown, the share of right top-1
        answers kept (not called unknown), and never-taught images called unknown (None without --never-taught)."""
        tested = max(int(self.confusion.sum()), 1)
        right = int(np.trace(self.confusion[:, :-1]))
        return {"right": right / tested, "wrong": (tested - right - self.taught_unknown) / tested,
                "unknown": self.taught_unknown / tested, "right_kept": right / max(right + self.right_unknown, 1),
                "never_taught_classes": len(self.never_taught),
                "never_taught_tested": self.never_taught_tested,
                "never_taught_unknown": (self.never_taught_unknown / self.never_taught_tested
                                         if self.never_taught_tested else None)}


def evaluate(r: "Recognizer", root: str | os.PathLike[str], shots: int, seed: int = 0,
             never_taught: int = 0) -> Evaluation:
    """Teach each class of `root` from `shots` random readable images (seeded) into r, through
    Recognizer.learn, and classify the others. Classes with fewer than shots + 1 readable images are left out
    (named in `failed`). never_taught: that many classes (picked with `seed`) are not taught at all and all
    their images are asked, to measure how many are called unknown."""
    if shots < 1:
        raise ValueError(f"--shots must be >= 1, got {shots}")
    folders = class_folders(root)
    if not 0 <= never_taught < len(folders):
        raise ValueError(f"--never-taught must be in [0, {len(folders) - 1}] for the {len(folders)} classes of "
                         f"{root} (at least one class must be taught), got {never_taught}")
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(sorted(folders))[:never_taught].tolist())
    tests: list[tuple[str, np.ndarray]] = []
    strangers: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    labels: list[str] = []
    for label, files in folders.items():
        emb = r.embed_each(files)
        failed += [(str(files[i]), why) for i, why in emb.failed]
        if label in held:
            strangers.append(emb.embeddings)
            continue
        if len(emb.ok) < shots + 1:
            failed.append((label, f"{len(emb.ok)} readable images; needs at least {shots + 1}"))
            continue
        order = rng.permutation(len(emb.ok))
        report = r.learn(label, [files[emb.ok[i]] for i in order[:shots]])
        labels.append(report.label)
        tests.append((report.label, emb.embeddings[order[shots:]]))
    if not labels:
        raise ValueError(f"no class of {root} has {shots + 1} readable images")
    confusion, unknown, right_unknown = _confusion(r, labels, tests)
    said = [res.label for e in strangers if len(e) for res in r.classify(e, top_k=1)]
    return Evaluation(tuple(labels), confusion, shots, tuple(failed), unknown, right_unknown, tuple(sorted(held)),
                      sum(lab is None for lab in said), len(said))


def _confusion(r: "Recognizer", labels: list[str],
               tests: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, int, int]:
    """The confusion matrix int (K, K+1) of the taught classes' test embeddings (label, (m, D)), how many were
    called unknown, and how many of those had the right top-1 class."""
    index = {lab: i for i, lab in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels) + 1), np.int64)
    unknown = right_unknown = 0
    for label, e in tests:
        for res in r.classify(e, top_k=1):
            unknown += res.label is None
            right_unknown += res.label is None and res.top.label == label
            col = len(labels) if res.label is None else index.get(res.label, len(labels))
            confusion[index[label], col] += 1
    return confusion, unknown, right_unknown


def plot_confusion(ev: Evaluation, path: str | os.PathLike[str]) -> None:
    """Save the confusion matrix as an image (needs matplotlib, which the runtime does not require)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
    k = len(ev.labels)
    rows = ev.confusion / np.maximum(ev.confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2 + 0.45 * k, 1.5 + 0.45 * k))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k + 1), [*ev.labels, "unknown or other"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), ev.labels, fontsize=8)
    for i in range(k):
        for j in range(k + 1):
            if ev.confusion[i, j]:
                ax.text(j, i, str(ev.confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    ax.set_title(f"{ev.shots} shots per class: top-1 {100 * ev.accuracy:.1f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
