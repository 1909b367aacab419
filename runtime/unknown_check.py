"""How an unknown policy fares on a class set's own shots: the open-set trial a user can run on what they taught,
with no photo beyond it (issue 29: the level of "unknown" depends on the domain, which export-time photos only
guess).

Each kept shot is asked twice, with the plain imprinted classifier (cosine to the normalized shot sums):
- *held out*: its class rebuilt from its other shots (classes with 2+ shots). When its own class is then its
  top-1 it is a right answer, and the policy keeps it unless it calls it unknown (the class then has n - 1 shots,
  its evidence is x . (S - x) / (n - 1));
- *never taught*: its class left out, so it is a photo of a thing the other classes never saw; the policy lets
  it through when it gives it the top remaining class (evidence x . S_top / n_top).
Both trials use only taught photos, so they can be run on a store before anything is asked of it. The evidence
that keeps 95% of the held-out right answers of classes with LEVEL_SHOTS or more shots is the level a policy for
this domain would use: on CUB it lands within 0.01 of the test photos' own level on average at 5 and 10 shots.
With fewer shots it runs high (0.574 against 0.500 at 2 shots, 0.520 against 0.498 at 3): a shot held out of a
class of 2 is answered right only when it is very like the other one (benchmarks/results/unknown_level.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classset import ClassSet
from .ranking import UnknownPolicy
from .shot_offsets import ShotOffsets

# Held-out right answers needed before a keep-95% level is worth stating (its 5% quantile is then the
# second-lowest value or above), and the shots their classes need (fewer bias the level up: module docstring).
MIN_RIGHT_FOR_LEVEL = 20
LEVEL_SHOTS = 5


@dataclass(frozen=True)
class UnknownCheck:
    """classes: in the set; held_out: shots asked with their class rebuilt from the others (classes with 2+
    shots); right: of those, answered by their own class; kept: the share of right answers the policy does not
    call unknown (None without any); strangers: shots asked with their class left out (0 with fewer than 2
    classes); let_through: the share of those the policy gives a label (None without any); keep95: the evidence
    that keeps 95% of the right answers of classes with LEVEL_SHOTS+ shots (None below MIN_RIGHT_FOR_LEVEL of
    them); level_from: how many right answers it rests on; let_through_at_keep95: the strangers' share at or above
    it; sampled: True when only max_shots shots were asked."""

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

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def check_unknown(classes: ClassSet, policy: UnknownPolicy, shot_offsets: ShotOffsets | None = None,
                  max_shots: int = 2000, seed: int = 0, level_shots: int = LEVEL_SHOTS) -> UnknownCheck:
    """Both trials (module docstring) for every kept shot of `classes`, or for `max_shots` of them picked with
    `seed` (the cost is shots x classes x D). Classes rank as the runtime ranks them (cosine + the bundle's shot
    offset for their shot count) and the policy reads cosines, margins and shot counts as runtime/ranking.py
    does. Classes without kept shots (a bundle's base classes) compete but are never asked; a refinement or
    templates are not used (the policy is defined on the imprinted rows). level_shots: the shots a class needs
    for its right answers to count towards keep95 (2 counts them all; benchmarks/unknown_level.py measures
    both)."""
    if max_shots < 1:
        raise ValueError(f"max_shots must be >= 1, got {max_shots}")
    with classes.lock:
        sums, _, counts, shots = classes.arrays()
        sums, counts = sums.astype(np.float64), counts.copy()
        rows = [(k, np.asarray(s, np.float64)) for k, per in enumerate(shots[: len(counts)]) for s in per]
    k_all = len(counts)
    sampled = len(rows) > max_shots
    if sampled:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_shots, replace=False))
        rows = [rows[i] for i in pick]
    if not rows:
        return UnknownCheck(k_all, 0, 0, None, 0, None, None, 0, None, False)
    own = np.array([k for k, _ in rows])
    x = np.stack([v for _, v in rows])  # (N, D) unit rows
    norms = np.linalg.norm(sums, axis=1)
    dots = x @ sums.T  # (N, K): x . S_k
    cos = dots / np.maximum(norms, 1e-12)
    n = counts.astype(np.float64)
    idx = np.arange(len(rows))

    def off(counts_: np.ndarray) -> np.ndarray:
        return (shot_offsets(np.maximum(counts_, 1)).astype(np.float64) if shot_offsets is not None
                else np.zeros(np.shape(counts_)))

    # Held out: own class rebuilt from the other shots, S - x with n - 1 shots.
    multi = n[own] >= 2
    s_dot = dots[idx, own] - np.einsum("ij,ij->i", x, x)
    rest_norm = np.sqrt(np.maximum(norms[own] ** 2 - 2 * dots[idx, own] + np.einsum("ij,ij->i", x, x), 0.0))
    held = cos.copy()
    held[idx, own] = np.where(multi, s_dot / np.maximum(rest_norm, 1e-12), -np.inf)
    held_scores = held + off(n)
    held_scores[idx, own] = held[idx, own] + off(n[own] - 1)
    right = multi & (held_scores.argmax(1) == own)
    r = idx[right]
    ev_right = s_dot[right] / (n[own][right] - 1)
    unk_right = _unknown(policy, held[r, own[r]], held_scores[r, own[r]], _margin(held_scores[right]),
                         n[own][right] - 1, 1 / np.maximum(rest_norm[right], 1e-12))

    # Never taught: own class left out.
    strangers = k_all >= 2
    if strangers:
        out = cos + off(n)
        out[idx, own] = -np.inf
        top = out.argmax(1)
        ev_stranger = dots[idx, top] / n[top]
        unk_stranger = _unknown(policy, cos[idx, top], out[idx, top], _margin(out), n[top],
                                1 / np.maximum(norms[top], 1e-12))
    ev_level = ev_right[n[own][right] >= level_shots]
    level = float(np.quantile(ev_level, 0.05, method="lower")) if ev_level.size >= MIN_RIGHT_FOR_LEVEL else None
    return UnknownCheck(
        classes=k_all, held_out=int(multi.sum()), right=int(right.sum()),
        kept=float((~unk_right).mean()) if right.any() else None,
        strangers=len(rows) if strangers else 0,
        let_through=float((~unk_stranger).mean()) if strangers else None,
        keep95=level, level_from=int(ev_level.size),
        let_through_at_keep95=float((ev_stranger >= level).mean()) if strangers and level is not None else None,
        sampled=sampled)


def _margin(cos: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 cosine per row of (N, K) (inf with one finite column: no runner-up)."""
    if cos.shape[1] < 2:
        return np.full(cos.shape[0], np.inf)
    two = -np.partition(-cos, 1, axis=1)[:, :2]
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
