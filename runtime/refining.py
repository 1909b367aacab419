"""Refining a class set on its stored shots (refine.py does the training; this reads the class set for it).

The training runs outside the class set's lock, so recognition goes on meanwhile; the refinement is kept only
if no class changed while it trained (ClassSet.set_refinement compares versions).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .classset import ClassSet
from .refine import RefineOptions, RefinePlan, plan_refinement
from .shot_offsets import ShotOffsets


def refine_classes(classes: ClassSet, options: RefineOptions = RefineOptions(),
                   shot_offsets: ShotOffsets | None = None, on_step: Callable[[int], None] | None = None,
                   exemplars: tuple[Sequence[str], np.ndarray] | None = None) -> RefinePlan:
    """Fine-tune a map of the embeddings and the rows on the stored shots if the held-out check says it helps
    (refine.plan_refinement); answers then come from it until a class changes. exemplars: (labels (M,), unit
    embeddings (M, D)) that count as shots of those classes for refining only (a bundle's base classes, which
    keep no shots); labels no longer present are skipped."""
    with classes.lock:
        if not len(classes):
            raise ValueError("there are no classes yet: teach some first")
        data, version = classes.to_store_data(), classes.version
    offsets = shot_offsets(data.counts) if shot_offsets is not None else None
    shots, shot_class = data.shots, data.shot_class
    if exemplars is not None:
        labels, emb = exemplars
        if emb.shape != (len(labels), classes.dim):
            raise ValueError(f"exemplars of shape {emb.shape} for {len(labels)} labels do not fit {classes.dim}-d classes")
        index = {lab: i for i, lab in enumerate(data.labels)}
        found = [(j, index[lab]) for j, lab in enumerate(labels) if lab in index]
        rows, cls = (np.array(v, np.int64) for v in zip(*found)) if found else (np.zeros(0, np.int64),) * 2
        shots = np.concatenate([shots, np.asarray(emb, np.float32)[rows]])
        shot_class = np.concatenate([shot_class, cls])
    plan = plan_refinement(data.sums, shots, shot_class, data.scale, offsets, options, on_step)
    if plan.refinement is None:
        if plan.before is None:  # too few shots: say which classes
            have = np.bincount(shot_class, minlength=len(data.labels))
            few = [f"{data.labels[c]!r} ({have[c]})" for c in np.flatnonzero(have < options.min_shots)[:5]]
            plan = replace(plan, why=f"{plan.why}: {', '.join(few)}{' ...' if len(few) == 5 else ''}")
        return plan
    if not classes.set_refinement(plan.refinement, version):
        return replace(plan, refinement=None, why="declined: the classes changed while refining; run it again")
    return plan


def unrefine(classes: ClassSet) -> bool:
    """Answer from the imprinted rows again; returns whether there was a refinement."""
    with classes.lock:
        had = classes.refinement is not None
        if had:
            classes.set_refinement(None, classes.version)
        return had
