"""Merging class sets: by shot identity, so that the same photo never counts twice.

A class is a set of shots, each known by its id (the photo's content digest, or the content id of its row),
plus a *residual*: evidence it does not keep as shots (a bundle's base class, averaged over its training
images; a class from a store saved without shots), known only as a count and a sum. Two shots are the same
when their ids are equal or their float32 bits are. Merging class I into class D of the same label:

- shots of I that D does not hold are added (sum and count);
- I's residual is added unless D's residual is the same one (equal count, sums within 1e-4 per shot);
- nothing new: D stays exactly as it is, bit for bit.

So `merge(a, a) == a`, importing twice equals importing once, and export -> import is the identity, while
disjoint shots still add exactly. Sums are accumulated in float64 in a fixed order (D's sum, then each new
shot in I's order, then I's residual) and rounded to float32 once: the Java core and the web demo do the same
and get the same bits. A residual that differs is added whole: two stores saved without shots cannot tell
which of their evidence is shared.

`three_way(base, ours, theirs)` applies what one writer changed since it read the store (`ours - base`) to what
is on disk now (`theirs`), shot by shot: the concurrent-save rule of store_sync.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .invariants import check_store_data
from .labels import validate_label
from .store import StoreData

RESIDUAL_TOL = 1e-4  # per shot: the same residual read back from two files differs by rounding only


@dataclass
class ClassRecord:
    """One class while merging: float32 sum (D,), count, kept shots (unit rows (D,)) and their ids."""

    label: str
    sum: np.ndarray
    count: int
    shots: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def residual(self) -> tuple[int, np.ndarray]:
        """(count, float64 sum) of the evidence not kept as shots; the shots subtracted in order."""
        res = self.sum.astype(np.float64)
        for s in self.shots:
            res -= s
        return self.count - len(self.shots), res

    def known(self) -> tuple[set[str], set[bytes]]:
        """The ids and the float32 bytes of its shots: a shot matching either is one it holds."""
        return set(self.ids), {s.tobytes() for s in self.shots}


def records(data: StoreData) -> list[ClassRecord]:
    """The classes of a store as records, in row order (copies: editing them leaves `data` as it is)."""
    out = [ClassRecord(lab, data.sums[k].copy(), int(data.counts[k])) for k, lab in enumerate(data.labels)]
    if data.shots is not None:
        for row, c, i in zip(data.shots, data.shot_class.tolist(), data.shot_ids):
            out[c].shots.append(row.copy())
            out[c].ids.append(i)
    return out


def from_records(recs: list[ClassRecord], like: StoreData, keep_shots: bool = True) -> StoreData:
    """A StoreData of these classes with `like`'s model and settings (no refinement: it fitted other classes)."""
    dim = like.embedding_dim
    shots = [s for r in recs for s in r.shots]
    return StoreData(
        labels=tuple(r.label for r in recs),
        sums=np.asarray([r.sum for r in recs], np.float32).reshape(len(recs), dim),
        counts=np.asarray([r.count for r in recs], np.int64),
        scale=like.scale, extractor_fingerprint=like.extractor_fingerprint,
        templates_per_class=like.templates_per_class,
        shots=np.asarray(shots, np.float32).reshape(len(shots), dim) if keep_shots else None,
        shot_class=np.repeat(np.arange(len(recs)), [len(r.shots) for r in recs]).astype(np.int64) if keep_shots else None,
        shot_ids=tuple(i for r in recs for i in r.ids) if keep_shots else None,
    )


def check_same_model(a: StoreData, b: StoreData, settings: bool = True) -> None:
    """ValueError unless both stores come from one model (and, with settings, have the same scale and templates
    per class: a merge changes neither)."""
    if (a.extractor_fingerprint, a.embedding_dim) != (b.extractor_fingerprint, b.embedding_dim):
        raise ValueError(
            f"cannot merge stores of different models: {a.extractor_fingerprint[:12]} ({a.embedding_dim}-d) and "
            f"{b.extractor_fingerprint[:12]} ({b.embedding_dim}-d)")
    for name in ("scale", "templates_per_class") if settings else ():
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            raise ValueError(f"cannot merge class stores with different settings: {name} {x:g} and {y:g} (a merge "
                             "keeps the destination's settings)")


def absorb(d: ClassRecord, i: ClassRecord, dry_run: bool = False) -> bool:
    """Merge class i into class d of the same label (see the module docstring); returns whether d grew."""
    new = []
    ids, bits = d.known()
    for s, sid in zip(i.shots, i.ids):
        if sid not in ids and s.tobytes() not in bits:
            new.append((s, sid))
            ids.add(sid)
            bits.add(s.tobytes())
    ri, res_i = i.residual()
    rd, res_d = d.residual()
    add_residual = ri > 0 and not (rd == ri and np.abs(res_d - res_i).max(initial=0) <= RESIDUAL_TOL * ri)
    if not new and not add_residual:
        return False
    if dry_run:
        return True
    acc = d.sum.astype(np.float64)
    for s, _ in new:
        acc += s
    if add_residual:
        acc += res_i
    d.sum = acc.astype(np.float32)
    d.count += len(new) + (ri if add_residual else 0)
    d.shots += [s for s, _ in new]
    d.ids += [sid for _, sid in new]
    return True


def merge_into(dest: StoreData, incoming: StoreData, rename_conflicts: bool = False) -> tuple[StoreData, list[str]]:
    """dest with incoming's classes merged in (the same label: one class, by shot identity; with rename_conflicts
    a class that adds something to an existing label stays apart as "label (2)", ...). Returns the result and
    the labels it added or grew, in incoming's order."""
    check_same_model(dest, incoming)
    recs = records(dest)
    by_label = {r.label: r for r in recs}
    changed = []
    for inc in records(incoming):
        target = by_label.get(inc.label)
        if target is None:
            recs.append(inc)
            by_label[inc.label] = inc
            changed.append(inc.label)
        elif not rename_conflicts:
            if absorb(target, inc):
                changed.append(inc.label)
        elif not any(absorb(by_label[n], inc, dry_run=True) is False for n in _namesakes(inc.label, by_label)):
            name = next(n for n in (f"{inc.label} ({k})" for k in range(2, len(by_label) + 3)) if n not in by_label)
            try:
                validate_label(name)
            except ValueError as err:  # the Java core and the web demo say the same
                raise ValueError(f'cannot keep "{inc.label}" apart as "{name}": {err}') from None
            inc.label = name
            recs.append(inc)
            by_label[name] = inc
            changed.append(name)
    keep = dest.shots is not None or incoming.shots is not None
    out = from_records(recs, dest, keep) if changed else dest
    check_store_data(out, "the merged class store would be invalid")
    return out, changed


def _namesakes(label: str, by_label: dict[str, ClassRecord]) -> list[str]:
    """label, "label (2)", "label (3)", ... as far as they exist (the Java core and the web demo do the same)."""
    names, k = [label], 2
    while f"{label} ({k})" in by_label:
        names.append(f"{label} ({k})")
        k += 1
    return names


def combine(stores: list[StoreData], rename_conflicts: bool = False) -> StoreData:
    """One store holding every class of `stores`: the first, with each next one merged in (merge_into)."""
    if not stores:
        raise ValueError("nothing to merge: give at least one class store")
    out = stores[0]
    for s in stores[1:]:
        out, _ = merge_into(out, s, rename_conflicts)
    return replace(out, refinement=None) if len(stores) > 1 else out


def three_way(base: StoreData | None, ours: StoreData, theirs: StoreData) -> StoreData:
    """theirs + (ours - base), class by class and shot by shot: shots we added are added unless theirs holds
    them, shots we dropped (an undo) are dropped, a class we removed or renamed loses what base had of it (the
    shots others added meanwhile stay), and residual counts and sums move by our change. A class whose count
    falls to zero is dropped. The result has ours' settings (the same store, saved again: `--templates`)."""
    check_same_model(theirs, ours, settings=False)
    b = {r.label: r for r in records(base)} if base is not None else {}
    o = {r.label: r for r in records(ours)}
    recs = records(theirs)
    out = {r.label: r for r in recs}
    for lab in list(b) + [lab for lab in o if lab not in b]:
        old, now = b.get(lab), o.get(lab, ClassRecord(lab, np.zeros(ours.embedding_dim, np.float32), 0))
        if old is not None and old.count == now.count and old.ids == now.ids and np.array_equal(old.sum, now.sum):
            continue  # unchanged by us: theirs stands
        t = out.get(lab)
        if t is None:
            t = out[lab] = ClassRecord(lab, np.zeros(ours.embedding_dim, np.float32), 0)
            recs.append(t)
        _apply_change(t, old, now)
    kept = [r for r in recs if r.count > 0]
    return from_records(kept, ours, any(d is not None and d.shots is not None for d in (base, ours, theirs)))


def _apply_change(t: ClassRecord, old: ClassRecord | None, now: ClassRecord) -> None:
    """t += (now - old) by shot ids and residuals, in float64, rounded once."""
    old_ids = set(old.ids) if old is not None else set()
    acc = t.sum.astype(np.float64)
    gone = old_ids - set(now.ids)
    for k in reversed(range(len(t.ids))):
        if t.ids[k] in gone:
            acc -= t.shots[k]
            del t.shots[k], t.ids[k]
            t.count -= 1
    ids, bits = t.known()
    for s, sid in zip(now.shots, now.ids):
        if sid not in old_ids and sid not in ids and s.tobytes() not in bits:
            ids.add(sid)
            bits.add(s.tobytes())
            acc += s
            t.shots.append(s)
            t.ids.append(sid)
            t.count += 1
    r_now, res_now = now.residual()
    r_old, res_old = old.residual() if old is not None else (0, np.zeros_like(acc))
    acc += res_now - res_old
    t.count += r_now - r_old
    t.sum = acc.astype(np.float32)
