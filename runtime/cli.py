"""The runtime's CLI commands (`imprint learn`, `classify`, `classes`, `info`); wired up in imprinting/cli.py."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .classset import ClassSet
from .cli_options import EVIDENCE_HELP, UNKNOWN_HELP, model_args, recognizer_options
from .folders import class_folders, evaluate, image_files, plot_confusion
from .info_cli import check_lines
from .labels import validate_label
from .merge import combine
from .recognizer import Recognizer
from .store import read_store, write_store
from .store_sync import editing, real_path, subset


def add_runtime_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn", help="teach classes from image files or folders (imprinting, no training)")
    model_args(p)
    p.add_argument("--label", help="class name; an existing class gets the images as more shots")
    p.add_argument("--folders", metavar="DIR", help="teach one class per subfolder of DIR, named after it")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of the class (with --label)")
    # argparse gives images that follow options back as extras; imprinting/cli.py adds them here.
    p.set_defaults(func=cmd_learn, extra_positionals="images")

    p = sub.add_parser("classify", help="classify image files and folders (recursively)")
    model_args(p, store="class store file (.npz) with the taught classes (imprint learn writes it)", mirror=False)
    p.add_argument("images", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image, best first (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per image, one per line")
    p.add_argument("--csv", action="store_true", help="CSV: image,label,cosine, then label_2,cosine_2,... up to "
                   "--top-k")
    p.add_argument("--explain", action="store_true",
                   help="also show, for each top class, the nearest taught shots, their cosines and their photos' "
                   "SHA-256 (the first 12 hex digits; `sha256sum *.jpg | grep DIGITS` finds the file)")
    p.add_argument("--min-cosine", type=float, help=UNKNOWN_HELP)
    p.add_argument("--min-evidence", type=float, help=EVIDENCE_HELP)
    p.add_argument("--min-margin", type=float, help="report 'unknown' when top-1 minus top-2 cosine is below this")
    from .classify_cli import cmd_classify

    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="score a labelled folder: teach N shots per subfolder, classify the rest")
    model_args(p, store=None)
    p.add_argument("--folders", required=True, metavar="DIR", help="one subfolder of images per class")
    p.add_argument("--shots", type=int, default=5, help="images taught per class (default 5); the rest are tested")
    p.add_argument("--seed", type=int, default=0, help="which images are taught")
    p.add_argument("--never-taught", type=int, default=0, metavar="K",
                   help="hold K classes out (never taught) and report how many of their photos are called unknown")
    p.add_argument("--min-cosine", type=float, help=UNKNOWN_HELP)
    p.add_argument("--min-evidence", type=float, help=EVIDENCE_HELP)
    p.add_argument("--plot", metavar="PNG", help="also save the confusion matrix (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=cmd_eval)

    _add_classes_parsers(sub)

    from .camera_cli import add_camera_parser

    add_camera_parser(sub)
    _add_refine_info_parsers(sub)


def _add_classes_parsers(sub: argparse._SubParsersAction) -> None:
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


def _add_refine_info_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refine", help="fine-tune the classes on their stored shots when a held-out check says it "
                       "helps (needs 10+ shots of every class; NumPy, seconds)")
    model_args(p, store="class store file (.npz) with the taught classes; the refinement is saved into it",
               mirror=False)
    p.add_argument("--undo", action="store_true", help="drop the store's refinement: answer from the imprinted rows")
    p.add_argument("--no-check", action="store_true", help="refine without the held-out check (still needs the shots)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("info", help="describe a model bundle: files, parity, where it was made and with what")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest and this host as JSON")
    p.add_argument("--store", help="also check the unknown policy on the shots of this class store (taught with the "
                   "bundle): right answers kept when a shot is held out, shots let through when their class is left "
                   "out, and the level that keeps 95%% of right answers on your photos")
    from .info_cli import cmd_info

    p.set_defaults(func=cmd_info)


def cmd_learn(args: argparse.Namespace) -> int:
    if args.folders and (args.label is not None or args.images):
        raise ValueError("give either --folders DIR, or --label NAME with image files or folders, not both")
    if not args.folders and (args.label is None or not args.images):
        raise ValueError("give --label NAME and image files or folders, or --folders DIR (one class per subfolder)")
    jobs = class_folders(args.folders) if args.folders else {validate_label(args.label): image_files(args.images)}
    real_path(args.store)  # a store in a missing folder fails now, not after every photo was learned
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        done: list[str] = []
        try:
            any_repeats = _learn_jobs(r, jobs, bool(args.folders), done)
        except KeyboardInterrupt:
            if done:  # every class learned before Ctrl-C is whole: keep it
                r.save()
            print(f"imprint: interrupted; {_classes(len(done))} learned before it "
                  f"{'saved to ' + args.store if done else 'nothing saved'}", file=sys.stderr)
            raise
        if not done and not any_repeats:
            raise ValueError(f"no class under {args.folders} had a readable image; nothing was saved")
        r.save()
        print(f"{_classes(len(r))} in {args.store}")
    return 0


def _classes(n: int) -> str:
    return f"{n} class{'' if n == 1 else 'es'}"


def _learn_jobs(r: Recognizer, jobs: dict[str, list[Path]], folders: bool, done: list[str]) -> bool:
    """Teach each class of jobs through Recognizer.learn, printing what happened; labels learned go to done.
    Returns whether any photo was skipped as taught already."""
    any_repeats = False
    for label, files in jobs.items():
        report = r.learn(label, files)
        if not folders and not report.added and not report.repeats:  # one class, nothing taught: one line
            raise ValueError(report.failed[0][1] if report.failed else "no image files")  # nothing is saved
        any_repeats |= bool(report.repeats)
        for f in report.repeats:
            print(f"skipped {f}: this photo is taught to {report.label!r} already", file=sys.stderr)
        for f, why in report.failed:
            print(f"skipped {f}: {why}", file=sys.stderr)
        if report.added:
            done.append(report.label)
            print(f"learned {report.label!r} from {len(report.added)} image(s) ({report.shots} shots)", flush=True)
        elif report.repeats and not report.failed:
            print(f"nothing new for {report.label!r}: every photo was taught already ({report.shots} shots)")
        else:
            print(f"nothing taught for {report.label!r}: "
                  f"{report.failed[0][1] if report.failed else 'no image files'}", file=sys.stderr)
    return any_repeats


def cmd_eval(args: argparse.Namespace) -> int:
    with Recognizer.open(args.bundle, None, recognizer_options(args)) as r:
        ev = evaluate(r, args.folders, args.shots, args.seed, args.never_taught)
        chk = r.check_unknown()  # the taught shots alone: what `imprint info --store` would say of this store
    rates = ev.open_set()
    if args.plot:
        plot_confusion(ev, args.plot)
    if args.json:
        print(json.dumps({"shots": ev.shots, "accuracy": ev.accuracy, "classes": {
            lab: {"accuracy": float(acc), "tested": int(ev.confusion[i].sum())} for i, (lab, acc) in
            enumerate(zip(ev.labels, ev.per_class))}, "confusion": ev.confusion.tolist(),
            "confusion_rows": list(ev.labels), "confusion_columns": [*ev.labels, "unknown or other"],
            "skipped": ev.failed, "open_set": {**rates, "never_taught": list(ev.never_taught)},
            "store_check": chk.to_dict()}, ensure_ascii=False))
    else:
        print(f"{'class':30s} {'tested':>6s} {'top-1':>6s}  most confused with")
        for i, lab in enumerate(ev.labels):
            row = ev.confusion[i].copy()
            row[i] = 0
            worst = int(np.argmax(row))
            other = (list(ev.labels) + ["unknown"])[worst] if row[worst] else "-"
            print(f"{lab[:30]:30s} {int(ev.confusion[i].sum()):6d} {100 * ev.per_class[i]:5.1f}%  {other}")
        print(f"top-1 over {int(ev.confusion.sum())} test images, {ev.shots} shots per class: {100 * ev.accuracy:.1f}%")
        print(f"taught photos: {100 * rates['right']:.1f}% right, {100 * rates['wrong']:.1f}% wrong, "
              f"{100 * rates['unknown']:.1f}% unknown ({100 * rates['right_kept']:.1f}% of right answers kept)")
        if ev.never_taught:
            print(f"never-taught photos ({ev.never_taught_tested} of {len(ev.never_taught)} classes: "
                  f"{', '.join(ev.never_taught)}): {100 * rates['never_taught_unknown']:.1f}% called unknown")
        print("the same policy checked on the taught photos alone (no test photo; `imprint info --store`):")
        for line in check_lines(chk):
            print("  " + line)
        for what, why in ev.failed:
            print(f"skipped {what}: {why}", file=sys.stderr)
        if args.plot:
            print(f"confusion matrix: {args.plot}")
    return 0


def cmd_classes_list(args: argparse.Namespace) -> int:
    classes = ClassSet.from_store_data(read_store(args.store))
    rows = [{"label": lab, "shots": classes.count(lab)} for lab in classes.labels]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['label']}\t{row['shots']}")
        print(_classes(len(rows)), file=sys.stderr)
    return 0


def cmd_classes_rename(args: argparse.Namespace) -> int:
    with editing(args.store) as classes:
        classes.rename(args.old, args.new)
    print(f"renamed {args.old!r} to {validate_label(args.new)!r}")
    return 0


def cmd_classes_remove(args: argparse.Namespace) -> int:
    with editing(args.store) as classes:
        classes.remove(args.label)
        left = len(classes)
    print(f"removed {args.label!r}; {_classes(left)} left")
    return 0


def cmd_classes_merge(args: argparse.Namespace) -> int:
    merged = combine([read_store(p) for p in args.stores], args.rename_conflicts)
    write_store(real_path(args.out), merged)
    print(f"merged {len(args.stores)} stores: {_classes(len(merged.labels))}, {int(merged.counts.sum())} shots in {args.out}")
    return 0


def cmd_classes_export(args: argparse.Namespace) -> int:
    if Path(args.out).exists() and real_path(args.out) == real_path(args.store):
        raise ValueError(f"--out {args.out} is the store itself: exporting onto it would drop every other class; "
                         "choose another file")
    part = subset(read_store(args.store), [validate_label(lab) for lab in args.label])
    write_store(real_path(args.out), part)
    print(f"exported {', '.join(part.labels)} to {args.out}")
    return 0


def cmd_classes_import(args: argparse.Namespace) -> int:
    incoming = read_store(args.file)
    with editing(args.store, create_like=incoming) as classes:
        changed = classes.merge(incoming, args.rename_conflicts)
    what = f"{len(changed)} new or grown: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}" if changed \
        else "nothing new: the store holds every shot already"
    print(f"imported {_classes(len(incoming.labels))} from {args.file} into {args.store} ({what})")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from .refine import RefineOptions

    if not Path(args.store).is_file():
        raise ValueError(f"--store {args.store}: no such class store; teach classes first (imprint learn)")
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        if args.undo:
            print("dropped the refinement" if r.unrefine() else "the store had no refinement")
        else:
            opt = RefineOptions(check=not args.no_check)
            # With the check: one training to decide and, if it helps, one on every shot; the bar shows after 1 s.
            with _progress(opt.steps * (2 if opt.check else 1), "refining", "step") as step:
                plan = r.refine(opt, on_step=lambda t: step())
            print(f"{plan.why} ({plan.seconds:.1f} s)")
            if not plan.refined:
                return 0
        r.save()
    return 0


@contextlib.contextmanager
def _progress(total: int, desc: str, unit: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr (tqdm, when installed: the runtime does not require it); yields step()."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda: None
        return
    with tqdm(total=total, desc=desc, unit=unit, delay=1.0, leave=False) as bar:
        yield lambda: bar.update(1)
