"""`imprint doctor BUNDLE [--json]`: every extractor file of a bundle with every engine this machine has, on
this machine: parity on the bundle's probes (mean and min cosine to PyTorch fp32), median batch-1 latency at
1 and 2 threads, the peak memory of a process that runs it, and which one the runtime will choose.

Each (file, engine) runs in a fresh process (so its peak memory is its own); the verdicts it measures are the
self-check's (selfcheck.py) and are cached like the runtime's, so a later open costs nothing. The JSON has the
host and version fields of benchmarks/reference/*.json, so a device owner can share a reference in one command.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import Bundle, load_bundle
from .extractor import ExtractorOptions
from .manifest import ExtractorEntry

log = logging.getLogger(__name__)

# onnxruntime providers that do not compute on this machine (a cloud endpoint): never a row.
_NOT_LOCAL = ("AzureExecutionProvider",)


@dataclass(frozen=True)
class DoctorOptions:
    """runs: timed batch-1 runs per thread count (median reported), after `warmup` untimed ones. threads: the
    thread counts timed. isolate: measure each (file, engine) in its own process (peak memory per row)."""

    runs: int = 30
    warmup: int = 5
    threads: tuple[int, ...] = (1, 2)
    isolate: bool = True

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise ValueError(f"runs must be >= 1 and warmup >= 0, got {self.runs} and {self.warmup}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must name thread counts >= 1, got {self.threads}")


def engines_for(entry: ExtractorEntry) -> list[tuple[str, str | None]]:
    """(engine, onnxruntime provider or OpenVINO device, or None) pairs installed here that can run `entry`."""
    if entry.format == "onnx":
        out: list[tuple[str, str | None]] = []
        try:
            from ._deps import require_onnxruntime

            out += [("onnxruntime", p) for p in require_onnxruntime().get_available_providers() if p not in _NOT_LOCAL]
        except ImportError:
            pass
        try:
            from ._openvino import require_openvino

            out += [("openvino", d) for d in require_openvino().Core().available_devices if d.split(".")[0] == "CPU"]
        except ImportError:
            pass
        return out
    if entry.format == "rknn":
        from ._deps import engine_installed

        return [("rknn", "npu")] if engine_installed("rknn") else []
    try:
        from ._deps import require_litert

        require_litert()
    except ImportError:
        return []
    return [("litert", None)]


def _rss_mb(peak: bool) -> float:
    """This process's current (VmRSS) or peak (VmHWM) resident memory in MB, from /proc (ru_maxrss elsewhere)."""
    key = "VmHWM:" if peak else "VmRSS:"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine_options(engine: str, where: str | None, threads: int) -> ExtractorOptions:
    if engine == "openvino":
        return ExtractorOptions(threads=threads, engine="openvino", openvino_device=where or "CPU", self_check="off")
    return ExtractorOptions(threads=threads, providers=(where,) if where else None, self_check="off")


def measure(bundle_dir: str, file: str, engine: str, where: str | None, options: DoctorOptions) -> dict[str, Any]:
    """One row: load `file` with `engine` (on onnxruntime provider or OpenVINO device `where`), its self-check
    figures, median latency (ms) per thread count on one probe (1, S, S, 3 crop normalized), and resident
    memory (MB) before and at peak."""
    from .selfcheck import check, verdict_dict

    bundle = load_bundle(bundle_dir)
    entry = next(e for e in bundle.manifest.extractors if e.file == file)
    probes = bundle.probes()
    base = _rss_mb(peak=False)
    row: dict[str, Any] = {"file": file, "format": entry.format, "precision": entry.precision, "latency_ms": {}}
    for i, threads in enumerate(options.threads):
        opts = _engine_options(engine, where, threads)
        t0 = time.perf_counter()
        ex = bundle.load_entry(entry, opts)
        try:
            if i == 0:
                row.update(engine=ex.backend, engine_version=getattr(ex, "engine_version", "unknown"),
                           device=getattr(ex, "device", "cpu"), load_ms=round((time.perf_counter() - t0) * 1e3, 1))
                row["check"] = verdict_dict(check(bundle, entry, ex, use_cache=False))
            row["latency_ms"][str(threads)] = round(_median_ms(ex, bundle, probes, options), 3)
        finally:
            ex.close()
    row.update(base_rss_mb=round(base, 1), peak_rss_mb=round(_rss_mb(peak=True), 1))
    return row


def _median_ms(ex: Any, bundle: Bundle, probes: tuple[np.ndarray, np.ndarray] | None, options: DoctorOptions) -> float:
    from .preprocess import normalize

    s = bundle.manifest.preprocess.input_size
    crop = probes[0][:1] if probes is not None else np.full((1, s, s, 3), 128, np.uint8)
    x = normalize(crop, bundle.manifest.preprocess, ex.layout)
    for _ in range(options.warmup):
        ex.run(x)
    times = []
    for _ in range(options.runs):
        t = time.perf_counter()
        ex.run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def _measure_isolated(bundle_dir: str, file: str, engine: str, where: str | None,
                      options: DoctorOptions) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, bundle_dir, file, engine, where, options).result()


def diagnose(bundle_dir: str | Path, options: DoctorOptions = DoctorOptions()) -> dict[str, Any]:
    """The doctor's report as JSON-ready data: {"device", "bundle", "options", "results": [row per file x
    engine], "chosen": the row the runtime will run by default (or None)}."""
    from .host import device_info

    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    run = _measure_isolated if options.isolate else measure
    load_before = _load()
    rows = []
    for entry in m.extractors:
        for engine, where in engines_for(entry):
            log.info("doctor: %s with %s %s", entry.file, engine, where or "")
            rows.append(run(str(bundle.path), entry.file, engine, where, options))
    return {
        "device": device_info(),
        "bundle": {"name": m.name, "path": str(bundle.path), "fingerprint": m.fingerprint,
                   "probes": m.probes.count if m.probes else 0, "exported_on": m.host},
        "options": {"runs": options.runs, "warmup": options.warmup, "threads": list(options.threads), "batch": 1},
        "load_average": {"before": load_before, "after": _load()},
        "results": rows,
        "chosen": _chosen(bundle, rows),
    }


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none): timings on a busy machine are
    inflated, and the report says so."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _chosen(bundle: Bundle, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The runtime's default pick: the first of Manifest.candidates() whose default engine passed its check."""
    for entry in bundle.manifest.candidates():
        default = [r for r in rows if r["file"] == entry.file and r["engine"] != "openvino"
                   and r["device"] in ("CPUExecutionProvider", "cpu", "npu")]
        if default and (default[0]["check"] is None or default[0]["check"]["passed"]):
            return {k: default[0][k] for k in ("file", "engine", "engine_version", "device")}
    return None


def format_report(report: dict[str, Any]) -> str:
    """The report as a table for a terminal."""
    d, b = report["device"], report["bundle"]
    threads = report["options"]["threads"]
    lines = [f"bundle {b['name']} ({b['probes']} probes) on {d['cpu']} ({d['arch']}, {d['cores']} cores; int8 kernels "
             f"{d['int8_kernels']}; {', '.join(d['features']) or 'no listed features'})", "",
             f"{'file':<24}{'engine':<30}{'mean cos':>9}{'min cos':>9}  {'ok':<4}"
             + "".join(f"{f'{t} thr ms':>10}" for t in threads) + f"{'peak MB':>9}"]
    for r in report["results"]:
        c = r["check"]
        fig = f"{c['mean_cosine']:>9.5f}{c['min_cosine']:>9.5f}  {'yes' if c['passed'] else 'NO':<4}" if c else \
            f"{'-':>9}{'-':>9}  {'-':<4}"
        engine = f"{r['engine']} {r['engine_version']} {r['device'].replace('ExecutionProvider', '')}"
        lines.append(f"{r['file']:<24}{engine[:29]:<30}{fig}"
                     + "".join(f"{r['latency_ms'][str(t)]:>10.2f}" for t in threads) + f"{r['peak_rss_mb']:>9.0f}")
    ch = report["chosen"]
    lines += ["", f"the runtime will run: {ch['file']} with {ch['engine']} ({ch['device']})" if ch else
              "the runtime will run: no file passed its self-check here (it would run the closest, with a warning)"]
    if not b["probes"]:
        lines.append("this bundle carries no probes (exported before they existed): re-export it to check parity")
    load = report["load_average"]["before"]
    if load and d["cores"] and load[0] > 0.5 * d["cores"]:
        lines.append(f"the machine was busy (load {load[0]} on {d['cores']} cores): latencies are inflated; run it "
                     "again on an idle machine for a reference")
    return "\n".join(lines)


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check every file of a bundle with every engine here: parity, latency, memory",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="model bundle directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON (a reference file to share)")
    p.add_argument("--runs", type=int, default=DoctorOptions.runs, help="timed runs per thread count (median)")
    p.add_argument("--threads", default="1,2", help="thread counts to time, comma-separated (default: 1,2)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        threads = tuple(int(t) for t in args.threads.split(","))
    except ValueError:
        raise ValueError(f"--threads takes comma-separated counts such as 1,2; got {args.threads!r}") from None
    report = diagnose(args.bundle, DoctorOptions(runs=args.runs, threads=threads))
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
