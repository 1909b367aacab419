"""The bundle's "unknown" policy, chosen at export time from held-out images: per shot count n of the top-1
class, the least *evidence* an answer needs, where a class's evidence for an image is its cosine times |S| / n
(S the sum of its n shot embeddings: the mean cosine to its shots; the cosine itself for one shot). A class taught
from many photos answers strangers and friends alike with higher cosines, by a factor that |S| / n measures
from the class's own shots (on CUB the cosine that keeps 95% of right answers climbs from 0.52 at 1 shot to 0.64
at 10, the evidence stays at 0.50-0.52: benchmarks/results/open_set.md), so one number per shot count serves.

Open-set trials over images grouped by source (each source is a class: a photo and its random views, or a
class folder of the user's --calib-dir): in each trial half of the sources are taught from `n` of their images,
the rest are never taught. The top-1 evidence of a never-taught image is a *negative* (it should be unknown);
the top-1 evidence of a held-out image of a taught source that lands on its own class is a *positive* (a right
answer). For each n in `shots` (1, 2, 5, 10) the threshold is the (1 - false_accept) quantile of the negatives
(at most that share of never-taught images gets a label), lowered where needed so that at least `accept` of the
positives are kept. Both measured rates are stored with it; the runtime interpolates between the shot counts in
log(count), as for shot_offsets (runtime/ranking.py UnknownPolicy.min_evidence_by_shots).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imprinting.runtime.images import IMAGE_SUFFIXES
from imprinting.runtime.shot_offsets import ShotOffsets

from .calibration import SAMPLE_PHOTOS, augment, load_image_dir, sample_photos

if TYPE_CHECKING:
    import torch

    from imprinting.runtime.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

SHOT_COUNTS = (1, 2, 5, 10)


@dataclass(frozen=True)
class ThresholdOptions:
    """false_accept: target share of never-taught images that still get a label; accept: the least share of right
    answers on taught images the threshold keeps (it wins over false_accept); shots: the shot counts per taught
    class to choose a threshold for; trials: random taught/untaught splits per shot count; seed for the splits."""

    false_accept: float = 0.05
    accept: float = 0.95
    shots: tuple[int, ...] = SHOT_COUNTS
    trials: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.false_accept < 0.5:
            raise ValueError(f"false_accept must be in (0, 0.5), got {self.false_accept}")
        if not 0.5 <= self.accept < 1.0:
            raise ValueError(f"accept must be in [0.5, 1), got {self.accept}")
        if not self.shots or any(n < 1 for n in self.shots) or list(self.shots) != sorted(set(self.shots)):
            raise ValueError(f"shots must be increasing shot counts >= 1, got {self.shots}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")


@dataclass(frozen=True)
class ShotPoint:
    """The operating point for classes taught from `shots` images: min_cosine the threshold; false_accept the
    measured share of negatives at or above it; accept the measured share of positives kept; negatives/positives
    how many top-1 cosines it rests on; sources the classes in the trials; bound: "false_accept" when the
    false-accept target set it, "accept" when it was lowered to keep the right answers."""

    shots: int
    min_cosine: float
    false_accept: float
    accept: float
    negatives: int
    positives: int
    sources: int
    bound: str


@dataclass(frozen=True)
class Threshold:
    """The policy chosen at export: one ShotPoint per shot count (fewest first) and the targets."""

    points: tuple[ShotPoint, ...]
    false_accept: float
    accept_target: float = 0.95
    source: str = ""  # the photos it was measured on (empty: not recorded)

    @property
    def min_cosine(self) -> float:
        """The single cosine threshold older readers apply to every class: the fewest shots' (for one shot the
        evidence is the cosine)."""
        return self.points[0].min_cosine

    @property
    def accept(self) -> float:
        return self.points[0].accept

    @property
    def table(self) -> ShotOffsets:
        """The thresholds by shot count, as the runtime reads them (UnknownPolicy.min_evidence_by_shots)."""
        return ShotOffsets(tuple(p.shots for p in self.points), tuple(p.min_cosine for p in self.points))

    def to_manifest(self) -> dict:
        p = self.points[0]
        return {"unknown_min_cosine": p.min_cosine, "unknown_false_accept": self.false_accept,
                "unknown_accept": round(p.accept, 4), "unknown_trials": {
                    "negatives": p.negatives, "positives": p.positives, "sources": p.sources, "shots": p.shots},
                "unknown_accept_target": self.accept_target, **({"unknown_source": self.source} if self.source else {}),
                "unknown_min_evidence_by_shots": {str(q.shots): q.min_cosine for q in self.points},
                "unknown_rates_by_shots": {str(q.shots): {
                    "false_accept": round(q.false_accept, 4), "accept": round(q.accept, 4), "negatives": q.negatives,
                    "positives": q.positives, "sources": q.sources, "bound": q.bound} for q in self.points}}


def open_set_trials(e: np.ndarray, g: np.ndarray, shots: int, trials: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(negatives (m,), positives (p,), sources) from unit embeddings float32 (n, D) and source ids (n,): the top-1
    class's evidence (cos * |S| / shots = e . S / shots) for never-taught images, and for held-out taught images
    answered right, over `trials` half/half splits
    of the sources with shots + 1 images or more. ValueError with fewer than 4 such sources."""
    ids = [s for s in np.unique(g) if (g == s).sum() >= shots + 1]
    if len(ids) < 4:
        raise ValueError(f"choosing an unknown threshold for {shots}-shot classes needs at least 4 sources with "
                         f"{shots + 1} images each, got {len(ids)}")
    members = {s: np.flatnonzero(g == s) for s in ids}
    negatives, positives = [], []
    for _ in range(trials):
        order = rng.permutation(len(ids))
        taught = [ids[i] for i in order[: len(ids) // 2]]
        rows, held = [], []
        for s in taught:
            m = rng.permutation(members[s])
            w = e[m[:shots]].sum(0)
            rows.append(w / shots)  # |w| / shots: the evidence's factor
            held.append(m[shots:])
        w = np.stack(rows)
        unit = w / np.linalg.norm(w, axis=1, keepdims=True)
        for c, m in enumerate(held):
            cos = e[m] @ unit.T
            right = cos.argmax(1) == c
            positives.append(e[m[right]] @ w[c])
        for i in order[len(ids) // 2:]:
            cos = e[members[ids[i]]] @ unit.T
            top = cos.argmax(1)
            negatives.append((e[members[ids[i]]] * w[top]).sum(1))
    return np.concatenate(negatives), np.concatenate(positives), len(ids)


def operating_point(neg: np.ndarray, pos: np.ndarray, shots: int, sources: int, false_accept: float,
                    accept: float) -> ShotPoint:
    """The threshold for negatives (m,) and positives (p,) top-1 evidence: the (1 - false_accept) quantile of the
    negatives, or the (1 - accept) quantile of the positives where that is lower; rounded down to 4 decimals
    (so the manifest's value keeps what was measured)."""
    t = float(np.quantile(neg, 1.0 - false_accept))
    bound = "false_accept"
    if pos.size:
        keep = float(np.quantile(pos, 1.0 - accept, method="lower"))
        if keep < t:
            t, bound = keep, "accept"
    t = min(max(math.floor(t * 1e4) / 1e4, -1.0), 1.0)
    fa = float((neg >= t).mean())
    acc = float((pos >= t).mean()) if pos.size else 0.0
    return ShotPoint(shots, t, fa, acc, int(neg.size), int(pos.size), sources, bound)


def choose_threshold(embeddings: np.ndarray, groups: np.ndarray,
                     options: ThresholdOptions = ThresholdOptions()) -> Threshold:
    """The unknown policy from unit embeddings float32 (n, D) and their source ids int (n,): an operating point
    per shot count that the sources can support (at least 4 with shots + 1 images). ValueError when none can."""
    e = np.asarray(embeddings, np.float32)
    g = np.asarray(groups)
    if e.ndim != 2 or g.shape != (e.shape[0],):
        raise ValueError(f"expected embeddings (n, D) and groups (n,), got {e.shape} and {g.shape}")
    rng = np.random.default_rng(options.seed)
    points, errors = [], []
    for n in options.shots:
        try:
            neg, pos, sources = open_set_trials(e, g, n, options.trials, rng)
        except ValueError as err:
            errors.append(str(err))
            continue
        points.append(operating_point(neg, pos, n, sources, options.false_accept, options.accept))
    if not points:
        raise ValueError(errors[0])
    return Threshold(tuple(points), options.false_accept, options.accept)


def class_folders(root: Path, per_class: int, seed: int) -> list[list[Path]] | None:
    """The image files of each subfolder of `root` that holds at least two (at most per_class of them, picked with
    `seed`), when at least 4 subfolders do; None otherwise (a flat folder of photos)."""
    rng = np.random.default_rng(seed)
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(files) >= 2:
            out.append([files[i] for i in sorted(rng.permutation(len(files))[:per_class])])
    return out if len(out) >= 4 else None


def threshold_images(calib_dir: str | os.PathLike[str] | None = None, views: int = 12, max_sources: int = 60,
                     seed: int = 0, per_class: int = 16) -> tuple[list[np.ndarray], np.ndarray]:
    """Images uint8 RGB (H, W, 3) for choose_threshold and their source ids (n,). A --calib-dir with at least 4
    class subfolders (2 or more photos each): each subfolder is a source, up to `per_class` of its photos (so a
    class is taught from some photos and asked about others, as a user's classes are). Otherwise each photo (the
    user's --calib-dir, else scikit-image's sample photos) is a source with views - 1 random views of it."""
    folders = class_folders(Path(calib_dir), per_class, seed) if calib_dir is not None and Path(calib_dir).is_dir() else None
    if folders is not None:
        from imprinting.runtime.images import load_image

        images, groups = [], []
        for i, files in enumerate(folders[:max_sources]):
            for f in files:
                try:
                    images.append(load_image(f))
                    groups.append(i)
                except ValueError as err:
                    log.debug("skipping %s: %s", f, err)
        return images, np.asarray(groups)
    sources = load_image_dir(calib_dir, limit=max_sources, seed=seed) if calib_dir is not None else sample_photos(SAMPLE_PHOTOS)
    rng = np.random.default_rng(seed)
    images, groups = [], []
    for i, photo in enumerate(sources):
        images.append(photo)
        images.extend(augment(photo, rng) for _ in range(views - 1))
        groups.extend([i] * views)
    return images, np.asarray(groups)


def describe_points(t: Threshold) -> str:
    """One line per shot count: the threshold and both measured rates."""
    return "; ".join(f"{p.shots} shot(s): below {p.min_cosine:.3f} (lets {100 * p.false_accept:.0f}% of never-taught "
                     f"through, keeps {100 * p.accept:.0f}% of right answers)" for p in t.points)


def threshold_for(model: "torch.nn.Module", spec: "PreprocessSpec", calib_dir: str | os.PathLike[str] | None,
                  false_accept: float, seed: int = 0) -> Threshold:
    """The policy for an exported model: PyTorch fp32 embeddings of threshold_images (the int8 files agree
    with them to a cosine of 0.99, far below the spread of the negatives)."""
    import torch

    from imprinting.runtime.preprocess import preprocess

    if calib_dir is not None and not _has_class_folders(calib_dir):
        # Without class folders nothing says which photos show the same thing: as separate sources, photos of one
        # thing would count as strangers and the policy would call most of a class's own photos unknown.
        log.warning("--calib-dir %s has no class subfolders (4 or more, 2+ photos each): its photos calibrate the "
                    "int8 files, but the unknown policy is chosen on the sample photos; put the photos of each thing "
                    "in a subfolder of its own to choose it on your photos", calib_dir)
        calib_dir = None
    images, groups = threshold_images(calib_dir, seed=seed)
    x = preprocess(images, spec, "NCHW")
    with torch.no_grad():
        e = torch.cat([model(torch.from_numpy(b)) for b in np.array_split(x, max(1, len(x) // 16))]).numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    t = choose_threshold(e, groups, ThresholdOptions(false_accept=false_accept, seed=seed))
    t = replace(t, source=f"class folders of {calib_dir}" if calib_dir else "scikit-image sample photos + random views")
    warn_if_loose(t, calib_dir)
    log.info("unknown policy: %s", describe_points(t))
    return t


def _has_class_folders(calib_dir: str | os.PathLike[str]) -> bool:
    """Whether a --calib-dir holds class subfolders (4 or more with 2+ photos each): what a policy needs."""
    return Path(calib_dir).is_dir() and class_folders(Path(calib_dir), 2, 0) is not None


def warn_if_loose(t: Threshold, calib_dir: str | os.PathLike[str] | None) -> None:
    """A warning, with what to do, when keeping the right answers cost more than twice the false-accept target, or
    when the trials had no right answer to keep."""
    flat = calib_dir is not None and Path(calib_dir).is_dir() and not _has_class_folders(calib_dir)
    hint = ("put the photos of each thing in a subfolder of its own (one folder per class, 4 or more), so that photos "
            "of the same thing are not counted as strangers" if flat else
            "this extractor barely tells these classes apart (an untrained model, or a fine-grained domain: train on "
            "it with `imprint train`)")
    for p in t.points:
        if p.positives == 0:
            log.warning("no held-out photo of a taught class was answered right with %d shot(s), so no threshold can "
                        "keep right answers there: %s", p.shots, hint)
        elif p.bound == "accept" and p.false_accept > 2 * t.false_accept:
            log.warning("keeping %.0f%% of right answers for %d-shot classes lets %.0f%% of never-taught photos "
                        "through (target %.0f%%): %s", 100 * p.accept, p.shots, 100 * p.false_accept,
                        100 * t.false_accept, hint)
