"""How an unknown policy fares on a class set's own shots: the open-set trial a user can run on what they taught,
with no photo beyond it (issue 29: the level of "unknown" depends on the domain, which export-time photos only
guess).

Each kept shot is asked twice, with the plain imprinted classifier (cosine to the normalized shot sums):
- *held out*: its class rebuilt without it and without its near-duplicates (the shots joined to it by chains of
  cosines of NEAR_DUPLICATE or more: the frames of one camera teach, which would answer each other), when the
  class keeps another photo. When its own class is then its top-1 it is a right answer, and the policy keeps it
  unless it calls it unknown (the class then has n - m shots summing to S - G, its evidence is
  x . (S - G) / (n - m));
- *never taught*: its class left out, so it is a photo of a thing the other classes never saw; the policy lets
  it through when it gives it the top remaining class (evidence x . S_top / n_top).
Both trials use only taught photos, so they can be run on a store before anything is asked of it. The evidence
that keeps 95% of the held-out right answers of classes with LEVEL_SHOTS or more distinct photos is the level a
policy for this domain would use: on CUB it lands within 0.01 of the test photos' own level on average at 5 and
10 shots. With fewer it runs high (0.574 against 0.500 at 2 shots, 0.520 against 0.498 at 3): a shot held out of
a class of 2 is answered right only when it is very like the other one (benchmarks/results/unknown_level.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .classset import ClassSet
from .ranking import UnknownPolicy
from .shot_offsets import ShotOffsets

# Held-out right answers needed before a keep-95% level is worth stating (it is then the second-lowest of them
# or above), and the distinct photos their classes need (fewer bias the level up: module docstring).
MIN_RIGHT_FOR_LEVEL = 20
LEVEL_SHOTS = 5
# Shots at or above this cosine to each other are one photo for the check: 5 frames of a simulated teach (random
# crops of 70-100% of a CUB photo with colour jitter) end up as one photo in 35 of 40 teaches, 39 of 40 with crops of
# 90-100%, while different photos of one CUB species reach it in 0.007% of pairs
# (benchmarks/results/unknown_level.md).
NEAR_DUPLICATE = 0.9


@dataclass(frozen=True)
class UnknownCheck:
    """classes: in the set; held_out: shots asked with their class rebuilt from its other photos; right: of those,
    answered by their own class; kept: the share of right answers the policy does not call unknown (None without
    any); strangers: shots asked with their class left out (0 with fewer than 2 classes); let_through: the share
    of those the policy gives a label (None without any); keep95: the evidence (rounded down to 4 decimals) that
    keeps at least 95% of the right answers of classes with LEVEL_SHOTS+ distinct photos (None below
    MIN_RIGHT_FOR_LEVEL of them); level_from: how many right answers it rests on; let_through_at_keep95: the
    strangers' share at or above it; sampled: True when only max_shots shots were asked; ranks_otherwise: why
    the runtime ranks this set otherwise than the check ("" when it does not: the check uses the imprinted rows)."""

    classes: int
    held_out: int
    right: int
    kept: float | None
    strangers: int
    let_through: float | None
    keep95: float | None
    level_from: int
    let_through_at_keep95: float | None
    sampled: bool
    ranks_otherwise: str = ""

    def to_dict(self) -> dict[str, object]:
        """The fields, rates rounded to 4 decimals (keep95 is already)."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def check_unknown(classes: ClassSet, policy: UnknownPolicy, shot_offsets: ShotOffsets | None = None,
                  max_shots: int = 2000, seed: int = 0, level_shots: int = LEVEL_SHOTS) -> UnknownCheck:
    """Both trials (module docstring) for every kept shot of `classes`, or for `max_shots` of them picked with
    `seed` (the cost is shots x classes x D). Classes rank as the runtime ranks them (cosine + the bundle's shot
    offset for their shot count, ties to the later class) and the policy reads cosines, margins and shot counts as
    runtime/ranking.py does, in float64 (a verdict within float32 rounding of a bar may differ). Classes without
    kept shots (a bundle's base classes) compete but are never asked; a refinement or templates are not used (the
    policy is defined on the imprinted rows; ranks_otherwise says so). level_shots: the distinct photos a class
    needs for its right answers to count towards keep95 (2 counts them all; benchmarks/unknown_level.py measures
    both)."""
    if max_shots < 1:
        raise ValueError(f"max_shots must be >= 1, got {max_shots}")
    with classes.lock:
        sums, _, counts, shots = classes.arrays()
        sums, counts = sums.astype(np.float64), counts.astype(np.float64)
        per_class = [np.asarray(s, np.float64).reshape(-1, classes.dim) for s in shots[: len(counts)]]
        otherwise = ", ".join(
            ([f"{classes.templates_per_class} templates per class"] if classes.templates_per_class > 1 else [])
            + (["a refinement"] if classes.refinement is not None else []))
    asked = _asked(per_class)
    if asked is None:
        return UnknownCheck(len(counts), 0, 0, None, 0, None, None, 0, None, False, otherwise)
    sampled = len(asked.own) > max_shots
    if sampled:
        pick = np.sort(np.random.default_rng(seed).choice(len(asked.own), max_shots, replace=False))
        asked = _Asked(*(getattr(asked, f.name)[pick] for f in dataclasses.fields(asked)))  # no deep copy
    rank = _Ranker(sums, counts, shot_offsets, policy, asked.x)
    right, ev_right, unk_right = rank.held_out(asked)
    strangers = len(counts) >= 2
    ev_stranger, unk_stranger = rank.never_taught(asked.own) if strangers else (None, None)
    ev_level = np.sort(ev_right[asked.photos[right] >= level_shots])
    level = None
    if ev_level.size >= MIN_RIGHT_FOR_LEVEL:
        # The highest bar that keeps at least 95% of them: all but floor(5%) are at or above it.
        level = math.floor(float(ev_level[int(0.05 * ev_level.size)]) * 1e4) / 1e4
    return UnknownCheck(
        classes=len(counts), held_out=int((asked.photos >= 2).sum()), right=int(right.sum()),
        kept=float((~unk_right).mean()) if right.any() else None,
        strangers=len(asked.own) if strangers else 0,
        let_through=float((~unk_stranger).mean()) if strangers else None,
        keep95=level, level_from=int(ev_level.size),
        let_through_at_keep95=float((ev_stranger >= level).mean()) if strangers and level is not None else None,
        sampled=sampled, ranks_otherwise=otherwise)


@dataclass(frozen=True)
class _Asked:
    """Per asked shot: own class (N,), unit row x (N, D), the sum (N, D) and size (N,) of its near-duplicate group,
    and its class's distinct photos (N,)."""

    own: np.ndarray
    x: np.ndarray
    group_sum: np.ndarray
    group_size: np.ndarray
    photos: np.ndarray


def _asked(per_class: list[np.ndarray]) -> _Asked | None:
    """Every kept shot with its group (near_duplicate_groups within its class); None without any."""
    own, x, group_sum, group_size, photos = [], [], [], [], []
    for k, rows in enumerate(per_class):
        if not len(rows):
            continue
        label = near_duplicate_groups(rows)
        n_groups = int(label.max()) + 1
        gsum = np.zeros((n_groups, rows.shape[1]))
        np.add.at(gsum, label, rows)
        own += [k] * len(rows)
        x.append(rows)
        group_sum.append(gsum[label])
        group_size.append(np.bincount(label, minlength=n_groups)[label])
        photos += [n_groups] * len(rows)
    if not own:
        return None
    return _Asked(np.asarray(own), np.concatenate(x), np.concatenate(group_sum),
                  np.concatenate(group_size).astype(np.float64), np.asarray(photos))


class _Ranker:
    """The runtime's ranking and policy for asked shots x (N, D) against class sums (K, D) and counts (K,)."""

    def __init__(self, sums: np.ndarray, counts: np.ndarray, shot_offsets: ShotOffsets | None,
                 policy: UnknownPolicy, x: np.ndarray) -> None:
        self.sums, self.n, self.offsets, self.policy = sums, counts, shot_offsets, policy
        self.norms = np.linalg.norm(sums, axis=1)
        self.dots = x @ sums.T  # (N, K): x . S_k
        self.cos = self.dots / np.maximum(self.norms, 1e-12)
        self.idx = np.arange(x.shape[0])

    def off(self, counts: np.ndarray) -> np.ndarray:
        if self.offsets is None:
            return np.zeros(np.shape(counts))
        return self.offsets(np.maximum(counts, 1)).astype(np.float64)

    def held_out(self, a: _Asked) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right (N,) bool, their evidence (r,), the policy's unknown (r,)) with each shot's class rebuilt
        without its group, S - G with n - m shots (when the class keeps another photo)."""
        idx, own = self.idx, a.own
        multi = a.photos >= 2
        rest = self.sums[own] - a.group_sum
        rest_norm = np.linalg.norm(rest, axis=1)
        rest_n = np.maximum(self.n[own] - a.group_size, 1.0)
        s_dot = np.einsum("ij,ij->i", a.x, rest)
        held = self.cos.copy()
        held[idx, own] = np.where(multi, s_dot / np.maximum(rest_norm, 1e-12), -np.inf)
        scores = held + self.off(self.n)
        scores[idx, own] = held[idx, own] + self.off(rest_n)
        right = multi & (_top(scores) == own)
        r = idx[right]
        unk = _unknown(self.policy, held[r, own[r]], scores[r, own[r]], _margin(scores[right]), rest_n[right],
                       1 / np.maximum(rest_norm[right], 1e-12))
        return right, s_dot[right] / rest_n[right], unk

    def never_taught(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(evidence (N,), the policy's unknown (N,)) of each shot's top class with its own class left out."""
        idx = self.idx
        scores = self.cos + self.off(self.n)
        scores[idx, own] = -np.inf
        top = _top(scores)
        unk = _unknown(self.policy, self.cos[idx, top], scores[idx, top], _margin(scores), self.n[top],
                       1 / np.maximum(self.norms[top], 1e-12))
        return self.dots[idx, top] / self.n[top], unk


def near_duplicate_groups(rows: np.ndarray, min_cosine: float = NEAR_DUPLICATE) -> np.ndarray:
    """Group ids int (n,) for unit rows (n, D): connected components of the graph joining rows whose cosine is at
    least min_cosine, numbered from 0 in order of first row."""
    near = rows @ rows.T >= min_cosine
    label = np.full(len(rows), -1)
    groups = 0
    for start in range(len(rows)):
        if label[start] >= 0:
            continue
        label[start] = groups
        todo = [start]
        while todo:
            j = todo.pop()
            for i in np.flatnonzero(near[j] & (label < 0)):
                label[i] = groups
                todo.append(i)
        groups += 1
    return label


def _top(scores: np.ndarray) -> np.ndarray:
    """The top column per row of (N, K), ties to the later column (runtime/ranking.py sorts and reverses)."""
    k = scores.shape[1]
    return k - 1 - scores[:, ::-1].argmax(1)


def _margin(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 score per row of (N, K) (inf with one finite column: no runner-up)."""
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    two = -np.partition(-scores, 1, axis=1)[:, :2]
    return np.where(np.isfinite(two[:, 1]), two[:, 0] - two[:, 1], np.inf)


def _unknown(policy: UnknownPolicy, top1: np.ndarray, score: np.ndarray, margin: np.ndarray, shots: np.ndarray,
             inv_norm: np.ndarray) -> np.ndarray:
    """The policy's verdict (bool (N,)) as runtime/ranking.py rank gives it, from the top class's cosines and
    scores (cosine + shot offset), the score margins, its shot counts and 1 / |sum|: a table compares the cosine
    with its bar, a single threshold the score."""
    if policy.min_evidence_by_shots is not None:
        bar = policy.min_evidence_by_shots(shots).astype(np.float64) * shots * inv_norm
        unk = top1 < bar
    elif policy.min_cosine is not None:
        unk = score < policy.min_cosine
    else:
        unk = np.zeros(top1.shape, bool)
    if policy.min_margin is not None:
        unk |= margin < policy.min_margin
    return unk
