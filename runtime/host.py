"""What an int8 figure depends on: this CPU's architecture, its instruction-set features, and so the family
of int8 kernels that onnxruntime and XNNPACK pick here.

Bundles record the host they were exported and checked on, benchmarks record the host they ran on, and the
runtime compares a bundle's recorded host kind with its own when it picks the fastest extractor file.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

# Flags that change int8/fp32 kernels (x86: /proc/cpuinfo "flags"; ARM: "Features").
_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
             "neon", "asimd", "asimddp", "i8mm", "sve")


def cpuinfo_fields() -> dict[str, str]:
    """The first value of each /proc/cpuinfo key, keys lower-cased ({} where it cannot be read)."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _cpuinfo() -> tuple[str, set[str]]:
    fields = cpuinfo_fields()
    model = next((fields[k] for k in ("model name", "hardware", "cpu model") if fields.get(k)), "")
    flags = fields.get("flags") or fields.get("features") or ""
    return model or platform.processor() or platform.machine(), set(flags.split())


def int8_kernel_family(arch: str, features: list[str] | tuple[str, ...]) -> str:
    """A short name for the int8 kernels a CPU gets: "x86-vnni" (int32 dot products), "x86-avx2" (u8s8
    pairs summed in int16, which can saturate), "x86-sse", "arm-dotprod", "arm" or "other"."""
    f = set(features)
    if arch in ("x86_64", "AMD64", "i686", "x86"):
        return "x86-vnni" if f & {"avx512_vnni", "avx_vnni", "amx_int8"} else "x86-avx2" if "avx2" in f else "x86-sse"
    if arch in ("aarch64", "arm64", "armv7l", "armv8l"):
        return "arm-dotprod" if "asimddp" in f else "arm"
    return "other"


@lru_cache(maxsize=1)
def host_info() -> dict[str, Any]:
    """This machine, JSON-ready: {"arch", "cpu", "features": [...], "int8_kernels": family name}."""
    model, flags = _cpuinfo()
    arch = platform.machine()
    features = [f for f in _FEATURES if f in flags]
    return {"arch": arch, "cpu": model, "features": features, "int8_kernels": int8_kernel_family(arch, features)}


def device_info() -> dict[str, Any]:
    """This machine for result files, with the same fields as benchmarks/device.py writes (cpu, arch, cores,
    features, ghz, governor, temperature_c, python, os, int8_kernels, versions) and every CPU flag."""
    import os

    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    host, fields = host_info(), cpuinfo_fields()
    mhz, max_khz = fields.get("cpu mhz"), read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    temp = read("/sys/class/thermal/thermal_zone0/temp")
    return {
        "cpu": host["cpu"], "arch": host["arch"], "cores": os.cpu_count(), "features": host["features"],
        "ghz": int(max_khz) / 1e6 if max_khz else (float(mhz) / 1000 if mhz else None),
        "governor": read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "temperature_c": int(temp) / 1000 if temp and temp.lstrip("-").isdigit() else None,
        "python": platform.python_version(), "os": platform.platform(), "int8_kernels": host["int8_kernels"],
        "versions": library_versions(), "flags": sorted((fields.get("flags") or fields.get("features") or "").split()),
    }


def library_versions(names: tuple[str, ...] = ("numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless",
                                               "opencv-python", "openvino")) -> dict[str, str]:
    """Installed versions of `names` (absent ones are left out), with Python's."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in names:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def describe(versions: dict[str, str] | None = None) -> str:
    """One line for result files: CPU, its kernel-relevant features, int8 kernel family, library versions."""
    h = host_info()
    v = library_versions() if versions is None else versions
    return (f"Host: {h['cpu']} ({', '.join(h['features'])}; int8 kernels {h['int8_kernels']}); "
            + ", ".join(f"{k} {x}" for k, x in v.items()) + ".")
