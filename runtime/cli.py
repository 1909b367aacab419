"""The runtime's CLI commands (`imprint learn`, `classify`, `classes`, `info`); wired up in imprinting/cli.py."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .bundle import load_bundle
from .classifier import ImprintedClassifier
from .folders import class_folders, embed_files, evaluate, image_files, plot_confusion
from .cli_options import UNKNOWN_HELP, model_args, recognizer_options
from .recognizer import Recognizer
from .recognizer_options import bundle_unknown_policy
from .labels import validate_label
from .store import read_store, write_store
from .store_sync import save_merged


def add_runtime_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn", help="teach classes from image files or folders (imprinting, no training)")
    model_args(p)
    p.add_argument("--label", help="class name; an existing class gets the images as more shots")
    p.add_argument("--folders", metavar="DIR", help="teach one class per subfolder of DIR, named after it")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of the class (with --label)")
    # argparse gives images that follow options back as extras; imprinting/cli.py adds them here.
    p.set_defaults(func=cmd_learn, extra_positionals="images")

    p = sub.add_parser("classify", help="classify image files and folders (recursively)")
    model_args(p)
    p.add_argument("images", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object per image, one per line")
    p.add_argument("--csv", action="store_true", help="CSV: image,label,cosine")
    p.add_argument("--explain", action="store_true",
                   help="also show, for each top class, the nearest taught shots and their cosines")
    p.add_argument("--min-cosine", type=float, help=UNKNOWN_HELP)
    p.add_argument("--min-margin", type=float, help="report 'unknown' when top-1 minus top-2 cosine is below this")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="score a labelled folder: teach N shots per subfolder, classify the rest")
    model_args(p, store=None)
    p.add_argument("--folders", required=True, metavar="DIR", help="one subfolder of images per class")
    p.add_argument("--shots", type=int, default=5, help="images taught per class (default 5); the rest are tested")
    p.add_argument("--seed", type=int, default=0, help="which images are taught")
    p.add_argument("--min-cosine", type=float, help=UNKNOWN_HELP)
    p.add_argument("--plot", metavar="PNG", help="also save the confusion matrix (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("classes", help="list, rename, remove, merge, export or import classes of a class store")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("list", help="list classes with their shot counts")
    c.add_argument("--store", required=True)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_classes_list)
    c = csub.add_parser("rename", help="rename a class")
    c.add_argument("--store", required=True)
    c.add_argument("old")
    c.add_argument("new")
    c.set_defaults(func=cmd_classes_rename)
    c = csub.add_parser("remove", help="remove a class")
    c.add_argument("--store", required=True)
    c.add_argument("label")
    c.set_defaults(func=cmd_classes_remove)

    c = csub.add_parser("merge", help="merge class stores (e.g. taught on several devices) into one file")
    c.add_argument("stores", nargs="+", metavar="STORE")
    c.add_argument("--out", required=True, help="the merged store to write")
    c.add_argument("--rename-conflicts", action="store_true",
                   help="keep classes of the same label apart as 'label (2)' (default: one class with all shots)")
    c.set_defaults(func=cmd_classes_merge)
    c = csub.add_parser("export", help="write some classes of a store to a file of their own")
    c.add_argument("--store", required=True)
    c.add_argument("--label", action="append", required=True, help="a class to export (repeat for several)")
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_classes_export)
    c = csub.add_parser("import", help="merge the classes of a file into a store (saved under the store's lock)")
    c.add_argument("--store", required=True)
    c.add_argument("file")
    c.add_argument("--rename-conflicts", action="store_true")
    c.set_defaults(func=cmd_classes_import)

    from .camera_cli import add_camera_parser

    add_camera_parser(sub)

    p = sub.add_parser("refine", help="fine-tune the classes on their stored shots when a held-out check says it "
                       "helps (needs 10+ shots of every class; NumPy, seconds)")
    model_args(p, store="class store file; the refinement is saved into it")
    p.add_argument("--undo", action="store_true", help="drop the store's refinement: answer from the imprinted rows")
    p.add_argument("--no-check", action="store_true", help="refine without the held-out check (still needs the shots)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("info", help="describe a model bundle: files, parity, where it was made and with what")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest and this host as JSON")
    p.set_defaults(func=cmd_info)


def cmd_learn(args: argparse.Namespace) -> int:
    if args.folders and (args.label is not None or args.images):
        raise ValueError("give either --folders DIR, or --label NAME with image files or folders, not both")
    if not args.folders and (args.label is None or not args.images):
        raise ValueError("give --label NAME and image files or folders, or --folders DIR (one class per subfolder)")
    jobs = class_folders(args.folders) if args.folders else {validate_label(args.label): image_files(args.images)}
    taught, any_repeats = 0, False
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        for label, files in jobs.items():
            label = validate_label(label)
            emb = embed_files(r, files, skip_digests=r.known_digests(label), shots=True)
            any_repeats |= bool(emb.repeats)
            for f in emb.repeats:
                print(f"skipped {f}: this photo is taught to {label!r} already", file=sys.stderr)
            if not emb.files and emb.repeats and not emb.failed:
                print(f"nothing new for {label!r}: every photo was taught already ({r.shots(label)} shots)")
                continue
            if not emb.files:
                reason = emb.failed[0][1] if emb.failed else "no image files"
                if not args.folders:
                    raise ValueError(reason)  # nothing to teach: one line, and no store is written
                print(f"nothing taught for {label!r}: {reason}", file=sys.stderr)
                continue
            for f, why in emb.failed:
                print(f"skipped {f}: {why}", file=sys.stderr)
            shots = r.learn_embeddings(label, emb.embeddings, unit=True, digests=emb.digests)
            taught += 1
            print(f"learned {label!r} from {len(emb.files)} image(s) ({shots} shots)")
        if not taught and not any_repeats:
            raise ValueError(f"no class under {args.folders} had a readable image; nothing was saved")
        r.save()
        print(f"{len(r)} classes in {args.store}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    files = image_files(args.images)
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        if len(r) == 0:
            raise ValueError(f"no classes yet: teach one with `imprint learn {args.bundle} --store {args.store} --label NAME IMAGE...`")
        emb = embed_files(r, files)
        results = r.classify(emb.embeddings, top_k=args.top_k, unit=True) if emb.files else []
        why = [{c.label: r.nearest_shots(e, c.label) for c in res.categories} if args.explain else {}
               for e, res in zip(emb.embeddings, results)]
    rows = csv.writer(sys.stdout) if args.csv else None
    if rows:
        rows.writerow(["image", "label", "cosine"])
    counts: dict[str, int] = {}
    for image, res, near in zip(emb.files, results, why):
        counts[res.label or "unknown"] = counts.get(res.label or "unknown", 0) + 1
        if args.json:
            extra = {"nearest_shots": {lab: [{"shot": i, "cosine": c} for i, c in v] for lab, v in near.items()}} if near else {}
            print(json.dumps({"image": str(image), **res.to_dict(), **extra}, ensure_ascii=False))
        elif rows:
            rows.writerow([str(image), res.label or "unknown", f"{res.score:.4f}"])
        else:
            top = ", ".join(f"{c.label} {c.score:.3f}" for c in res.categories)
            print(f"{image}: {res.label if res.label is not None else 'unknown'}  ({top})")
            for c in res.categories if near else ():
                shots = ", ".join(f"shot {i} {cos:.3f}" for i, cos in near[c.label]) or "no stored shots"
                print(f"    {c.label}: {c.shots} shots; nearest {shots}")
    for f, why in emb.failed:
        print(f"skipped {f}: {why}", file=sys.stderr)
    if len(files) > 1:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"{len(emb.files)} classified ({summary}); {len(emb.failed)} unreadable", file=sys.stderr)
    return 1 if emb.failed and not emb.files else 0


def cmd_eval(args: argparse.Namespace) -> int:
    with Recognizer.open(args.bundle, None, recognizer_options(args)) as r:
        ev = evaluate(r, args.folders, args.shots, args.seed)
    if args.plot:
        plot_confusion(ev, args.plot)
    if args.json:
        print(json.dumps({"shots": ev.shots, "accuracy": ev.accuracy, "classes": {
            lab: {"accuracy": float(acc), "tested": int(ev.confusion[i].sum())} for i, (lab, acc) in
            enumerate(zip(ev.labels, ev.per_class))}, "confusion": ev.confusion.tolist(), "skipped": ev.failed},
            ensure_ascii=False))
    else:
        print(f"{'class':30s} {'tested':>6s} {'top-1':>6s}  most confused with")
        for i, lab in enumerate(ev.labels):
            row = ev.confusion[i].copy()
            row[i] = 0
            worst = int(np.argmax(row))
            other = (list(ev.labels) + ["unknown"])[worst] if row[worst] else "-"
            print(f"{lab[:30]:30s} {int(ev.confusion[i].sum()):6d} {100 * ev.per_class[i]:5.1f}%  {other}")
        print(f"top-1 over {int(ev.confusion.sum())} test images, {ev.shots} shots per class: {100 * ev.accuracy:.1f}%")
        for what, why in ev.failed:
            print(f"skipped {what}: {why}", file=sys.stderr)
        if args.plot:
            print(f"confusion matrix: {args.plot}")
    return 0


def _load_classes(store: str) -> ImprintedClassifier:
    return ImprintedClassifier.from_store_data(read_store(store))


def cmd_classes_list(args: argparse.Namespace) -> int:
    clf = _load_classes(args.store)
    rows = [{"label": lab, "shots": clf.count(lab)} for lab in clf.labels]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['label']}\t{row['shots']}")
        print(f"{len(rows)} classes", file=sys.stderr)
    return 0


def cmd_classes_rename(args: argparse.Namespace) -> int:
    base = read_store(args.store)
    clf = ImprintedClassifier.from_store_data(base)
    clf.rename(args.old, args.new)
    save_merged(args.store, base, clf.to_store_data())
    print(f"renamed {args.old!r} to {args.new.strip()!r}")
    return 0


def cmd_classes_remove(args: argparse.Namespace) -> int:
    base = read_store(args.store)
    clf = ImprintedClassifier.from_store_data(base)
    clf.remove(args.label)
    save_merged(args.store, base, clf.to_store_data())
    print(f"removed {args.label!r}; {len(clf)} classes left")
    return 0


def cmd_classes_merge(args: argparse.Namespace) -> int:
    from .store_sync import combine

    merged = combine([read_store(p) for p in args.stores], args.rename_conflicts)
    write_store(args.out, merged)
    print(f"merged {len(args.stores)} stores: {len(merged.labels)} classes, {int(merged.counts.sum())} shots in {args.out}")
    return 0


def cmd_classes_export(args: argparse.Namespace) -> int:
    from .store_sync import subset

    part = subset(read_store(args.store), [validate_label(lab) for lab in args.label])
    write_store(args.out, part)
    print(f"exported {', '.join(part.labels)} to {args.out}")
    return 0


def cmd_classes_import(args: argparse.Namespace) -> int:
    from .store_sync import combine

    incoming = read_store(args.file)
    base = read_store(args.store) if Path(args.store).exists() else None
    ours = combine([base, incoming] if base is not None else [incoming], args.rename_conflicts)
    save_merged(args.store, base, ours)
    print(f"imported {len(incoming.labels)} classes from {args.file} into {args.store}")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .refine import RefineOptions

    if not Path(args.store).is_file():
        raise ValueError(f"--store {args.store}: no such class store; teach classes first (imprint learn)")
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        if args.undo:
            print("dropped the refinement" if r.unrefine() else "the store had no refinement")
        else:
            opt = RefineOptions(check=not args.no_check)
            # With the check: one training to decide and, if it helps, one on every shot; the bar shows after 1 s.
            with tqdm(total=opt.steps * (2 if opt.check else 1), desc="refining", unit="step", delay=1.0,
                      leave=False) as bar:
                plan = r.refine(opt, on_step=lambda t: bar.update(1))
            print(f"{plan.why} ({plan.seconds:.1f} s)")
            if not plan.refined:
                return 0
        r.save()
    return 0


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
