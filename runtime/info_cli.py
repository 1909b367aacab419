"""`imprint info`: what a bundle is, where it was made and with what, and what this host will run."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .bundle import load_bundle
from .manifest import Manifest
from .classset import ClassSet
from .recognizer_options import bundle_unknown_policy
from .store import read_store
from .unknown_check import LEVEL_SHOTS, MIN_RIGHT_FOR_LEVEL, UnknownCheck, check_unknown


def cmd_info(args: argparse.Namespace) -> int:
    from .host import host_info, library_versions

    b = load_bundle(args.bundle)
    m = b.manifest
    base = b.base_classes()
    here = host_info()
    if args.json:
        chk = _store_check(args.store, m) if args.store else None
        print(json.dumps({"bundle": str(args.bundle), "manifest": m.to_dict(), "base_classes": len(base.labels) if base else 0,
                          "this_host": {**here, "versions": library_versions()}, "default_file": _default_file(m),
                          **({"store_check": {"store": str(args.store), **chk.to_dict()}} if chk else {})}, indent=1))
        return 0
    print(f"bundle {Path(args.bundle)}: {m.name}, {m.embedding_dim}-d embeddings, scale {m.scale:.3f}")
    print(f"fingerprint {m.fingerprint}")
    pp = m.preprocess
    print(f"preprocess: resize ({pp.resize_mode}, {pp.interpolation}) to {pp.resize_size}, centre crop {pp.input_size}, "
          f"(x - {list(pp.mean)}) / {list(pp.std)}")
    for e in m.extractors:
        cos = f", parity cosine {e.parity_cosine:.4f}" if e.parity_cosine is not None else ""
        lat = f", {e.latency_ms:.2f} ms (1 thread)" if e.latency_ms is not None else ""
        print(f"  {e.file}: {e.format} {e.precision} {e.layout}{cos}{lat}")
    for r in m.rejected:
        print(f"  rejected at export: {r.get('file')} ({r.get('reason')})")
    print(f"base classes: {len(base.labels) if base else 0}" + (
        "" if not base else f" ({'with' if m.base_exemplars else 'without'} exemplars for `imprint refine`)"))
    for line in unknown_lines(m):
        print(line)
    if args.store:
        print(f"on the shots of {args.store}:")
        for line in check_lines(_store_check(args.store, m)):
            print("  " + line)
    if m.host:
        print(f"checked on: {m.host.get('cpu')} ({m.host.get('arch')}; {', '.join(m.host.get('features', []))}; "
              f"int8 kernels {m.host.get('int8_kernels')})")
    if m.versions:
        print("made with: " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    print(f"this host: {here['cpu']} ({here['arch']}; int8 kernels {here['int8_kernels']}); default file "
          f"{_default_file(m) or 'none: no engine for any of its files is installed'}")
    return 0


def _store_check(store: str, m: Manifest) -> UnknownCheck:
    """The bundle's policy checked on a class store taught with it (its fingerprint must match)."""
    data = read_store(store, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
    return check_unknown(ClassSet.from_store_data(data), bundle_unknown_policy(m), m.shot_offsets)


def check_lines(c: UnknownCheck) -> list[str]:
    """The check in words (`imprint info --store`, `imprint eval`)."""
    sample = " (a random sample of them)" if c.sampled else ""
    out = [f"(the runtime ranks this store with {c.ranks_otherwise}; the check uses its imprinted rows)"
           ] if c.ranks_otherwise else []
    if c.right:
        out.append(f"held out one at a time, {c.right} of {c.held_out} shots{sample} are answered by their own class "
                   f"(rebuilt from its other photos); the policy keeps {100 * c.kept:.1f}% of them")
    else:
        out.append("no shot held out is answered by its own class rebuilt from its other photos (frames of one "
                   "teach count as one photo): nothing says how many right answers the policy keeps (teach "
                   "classes from 2 or more different photos)")
    if c.strangers:
        out.append(f"asked as photos of things never taught (their class left out), {100 * c.let_through:.1f}% of "
                   f"{c.strangers} shots get another class's label")
    if c.keep95 is not None:
        tail = (f", where {100 * c.let_through_at_keep95:.1f}% of those shots get a label"
                if c.let_through_at_keep95 is not None else "")
        level = math.floor(c.keep95 * 1000) / 1000  # rounded down: it still keeps what it says
        out.append(f"the evidence that keeps 95% of the right answers of classes with {LEVEL_SHOTS}+ different "
                   f"photos is {level:.3f}{tail} (--min-evidence {level:.3f} uses it)")
    elif c.right:
        out.append(f"the level that keeps 95% of right answers is stated from {MIN_RIGHT_FOR_LEVEL} right answers of "
                   f"classes with {LEVEL_SHOTS}+ different photos (here {c.level_from}): fewer make it run high")
    return out


def _default_file(m: Manifest) -> str | None:
    """The first candidate whose engine is installed here: what the runtime opens unless its self-check fails."""
    from ._deps import engine_installed

    return next((e.file for e in m.candidates() if engine_installed(e.format)), None)


def unknown_lines(m: Manifest) -> list[str]:
    """The bundle's unknown policy for `imprint info`: the single threshold, or the table by shot count, each row
    with both rates measured at export (never-taught calibration photos accepted, right answers kept)."""
    u = bundle_unknown_policy(m)
    cal = m.calibration
    far = cal.get("unknown_false_accept")
    if far is None:
        return [f"unknown below cosine {u.min_cosine:.3f} (the runtime's default: this bundle carries none)"]
    rates = cal.get("unknown_rates_by_shots") if isinstance(cal.get("unknown_rates_by_shots"), dict) else {}
    if u.min_evidence_by_shots is None:
        acc = cal.get("unknown_accept")
        return [f"unknown below cosine {u.min_cosine:.3f} (chosen at export for a {100 * far:.0f}% false-accept "
                f"rate" + (f"; keeps {100 * acc:.0f}% of right answers)" if isinstance(acc, (int, float)) else ")")]
    out = [f"unknown policy by shot count (the top class's evidence, cosine x |shot sum| / shots, below the value "
           f"is unknown; chosen at export for a {100 * far:.0f}% false-accept rate, keeping at least "
           f"{100 * cal.get('unknown_accept_target', 0.95):.0f}% of right answers; measured on "
           f"{cal.get('unknown_source', cal.get('source', 'the calibration photos'))}):"]
    t = u.min_evidence_by_shots
    for n, v in zip(t.shots, t.offsets):
        r = rates.get(str(n)) if isinstance(rates.get(str(n)), dict) else {}
        fa, acc = r.get("false_accept"), r.get("accept")
        both = (f": {100 * fa:.0f}% of never-taught photos accepted, {100 * acc:.0f}% of right answers kept"
                if isinstance(fa, (int, float)) and isinstance(acc, (int, float)) else "")
        out.append(f"  {n} shot(s): evidence below {v:.3f}{both}")
    return out
