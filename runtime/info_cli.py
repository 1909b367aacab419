"""`imprint info`: what a bundle is, where it was made and with what, and what this host will run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .bundle import load_bundle
from .recognizer_options import bundle_unknown_policy


def cmd_info(args: argparse.Namespace) -> int:
    from .host import host_info, library_versions

    b = load_bundle(args.bundle)
    m = b.manifest
    base = b.base_classes()
    here = host_info()
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "manifest": m.to_dict(), "base_classes": len(base.labels) if base else 0,
                          "this_host": {**here, "versions": library_versions()}, "default_file": m.select().file}, indent=1))
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
    u = bundle_unknown_policy(m)
    far = m.calibration.get("unknown_false_accept")
    print(f"unknown below cosine {u.min_cosine:.3f}" + (f" (chosen at export for a {100 * far:.0f}% false-accept rate)"
                                                        if far is not None else " (the runtime's default: this bundle carries none)"))
    if m.host:
        print(f"checked on: {m.host.get('cpu')} ({m.host.get('arch')}; {', '.join(m.host.get('features', []))}; "
              f"int8 kernels {m.host.get('int8_kernels')})")
    if m.versions:
        print("made with: " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    print(f"this host: {here['cpu']} ({here['arch']}; int8 kernels {here['int8_kernels']}); default file "
          f"{m.select().file}")
    return 0
