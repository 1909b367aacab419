"""The CUB results file (markdown beside the paper's numbers) and its plots, from benchmarks/cub.py's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHOTS = (1, 2, 5, 10, 20)
# Top-1 % at n = 1, 2, 5, 10, 20 (Qi et al. 2018, Tables 1-2, InceptionV1; and a public ResNet-50 reproduction).
PAPER = {
    "novel": {
        "Paper: Imprinting": (21.26, 28.69, 39.52, 45.77, 49.32),
        "Paper: Imprinting+FT": (18.67, 30.17, 46.08, 59.39, 68.77),
        "Paper: Rand+FT": (5.25, 13.41, 34.95, 54.33, 65.60),
        "Paper: AllClassJoint": (3.89, 10.82, 33.00, 50.24, 64.88),
        "ResNet-50 repro: Imprinting": (28.77, 37.61, 50.20, 56.31, 60.58),
        "ResNet-50 repro: Imprinting+FT": (26.14, 34.81, 54.40, 63.41, 73.41),
    },
    "all": {
        "Paper: Imprinting": (44.75, 48.21, 52.95, 55.99, 57.47),
        "Paper: Imprinting+FT": (45.81, 50.41, 59.15, 64.65, 68.73),
        "Paper: Rand-noFT": (37.36,) * 5,
        "ResNet-50 repro: Imprinting": (53.50, 57.35, 62.65, 65.38, 67.09),
    },
}


def _cell(values: list) -> tuple[float, float]:
    a = np.asarray(values)
    return float(a.mean()), float(a.std())


def _table(results: list[dict], metric: int, shots: list[int], key: str) -> list[str]:
    head = "| row | extractor | " + " | ".join(f"n={n}" for n in shots) + " |"
    lines = [head, "|---|---|" + "---:|" * len(shots)]
    for label, vals in PAPER[key].items():
        lines.append(f"| {label} | published | " + " | ".join(f"{v:.2f}" for n, v in zip(SHOTS, vals) if n in shots) + " |")
    for r in results:
        for row, per_n in r["rows"].items():
            cells = []
            for n in shots:
                v = per_n.get(str(n))
                cells.append("" if not v else "{:.2f} ± {:.2f}".format(*_cell([x[metric] for x in v])))
            lines.append(f"| {row} | {r['name']} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, meta: dict, results: list[dict], sweep: dict | None = None) -> None:
    shots = meta["shots"]
    lines = [
        "# CUB-200-2011 low-shot benchmark",
        "",
        f"Regenerate: `{meta['command']}` ({meta['date']}, {meta['machine']}).",
        f"Host: {meta.get('host', {}).get('cpu', '?')} ({', '.join(meta.get('host', {}).get('features', []))}; int8 kernels "
        f"{meta.get('host', {}).get('int8_kernels', '?')}); " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) + ".",
        f"Seeds (shot draws): {meta['seeds']}; cells are mean ± std over them, top-1 %, 200-way.",
        "Imprinting rows run the exported extractor files through the runtime and its classifier (`ImprintedClassifier`); "
        "no fine-tuning unless a row says so.",
        "No test image enters anything a row learns: class rows, the CL2N centre and the calibration table come from "
        "training images only (benchmarks/cub_protocol.py; tests/test_cub_protocol.py).",
        "",
        "Extractors:",
        "",
    ]
    for r in results:
        src = r.get("source") or {}
        lines.append(f"- `{r['name']}`: {r['format']} {r['precision']}, D = {r['dim']}, "
                     f"base rows {'from the bundle' if r['trained_base'] else 'imprinted here from the base training images'}"
                     f"{'; ' + ', '.join(f'{k}: {v}' for k, v in src.items()) if src else ''}; "
                     f"shot offsets {r['offsets']} ({r.get('offsets_from', 'chosen on base training images')})")
    lines += ["", "## Novel classes (Table 1)", ""] + _table(results, 0, shots, "novel")
    lines += ["", "## All classes (Table 2)", ""] + _table(results, 1, shots, "all")
    fp = {(r["bundle"], r["format"]): r for r in results if r["precision"] == "fp32"}
    pairs = [(fp[(r["bundle"], r["format"])], r) for r in results if r["precision"] == "int8" and (r["bundle"], r["format"]) in fp]
    if pairs:
        lines += ["", "## int8 against fp32 (Imprinting, novel / all, points)", "",
                  "| extractor | " + " | ".join(f"n={n}" for n in shots) + " |", "|---|" + "---:|" * len(shots)]
        for a, b in pairs:
            cells = []
            for n in shots:
                fa, fb = a["rows"]["Imprinting"][str(n)], b["rows"]["Imprinting"][str(n)]
                cells.append(f"{_cell([x[0] for x in fb])[0] - _cell([x[0] for x in fa])[0]:+.2f} / "
                             f"{_cell([x[1] for x in fb])[0] - _cell([x[1] for x in fa])[0]:+.2f}")
            lines.append(f"| {b['name']} vs {a['file']} | " + " | ".join(cells) + " |")
    plots = ["cub_novel.png", "cub_all.png", "cub_fig6.png"]
    if sweep:
        lines += ["", "## Embedding dimension (Figure 7)", "",
                  "Heads trained by `imprint train`'s fast path (epochs chosen by its pseudo-novel check: "
                  + ", ".join(f"{k}: {v}" for k, v in sweep["epochs"].items())
                  + ") on the cached PyTorch fp32 pooled features; imprinting + shot-aware calibration with imprinted "
                  "base rows; novel / all top-1 %.", "",
                  "| D | " + " | ".join(f"n={n}" for n in shots) + " |", "|---|" + "---:|" * len(shots)]
        for name, per_n in sweep["rows"].items():
            cells = [" / ".join(f"{_cell([x[m] for x in per_n[str(n)]])[0]:.2f}" for m in (0, 1)) for n in shots]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        from cub_figures import plot_dimensions

        plot_dimensions(sweep, shots, out / "cub_fig7.png")
        plots.append("cub_fig7.png")
    sheets = [r["sheet"] for r in results if r.get("sheet")]
    if sheets:
        worst = sorted(sheets[0]["recall"].items(), key=lambda kv: kv[1])
        lines += ["", "## 1-shot exemplars (Figure 5)", "",
                  f"`{sheets[0]['file']}` ({sheets[0]['extractor']}, shot draw 0): the best and worst novel classes by "
                  "recall, e.g. " + ", ".join(f"{k} {v:.0%}" for k, v in worst[:2] + worst[-2:]) + "."]
        plots.append(sheets[0]["file"])
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in plots) + ".", ""]
    (out / "cub.md").write_text("\n".join(lines))
    _plot(out, results, shots)
    _plot_fig6(out, results, shots)


def _plot(out: Path, results: list[dict], shots: list[int]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    # One extractor per bundle keeps the plot readable: the int8 ONNX file users run (the table has all).
    shown = [r for r in results if (r["format"] == "onnx" and r["precision"] == "int8") or r["format"] == "pytorch"] or results
    styles = ["-", "--", ":", "-."]
    for metric, key in ((0, "novel"), (1, "all")):
        fig, ax = plt.subplots(figsize=(11, 5.5))
        for j, (label, vals) in enumerate(PAPER[key].items()):
            ax.plot(SHOTS, vals, color="black", alpha=0.55, lw=1.2, marker="x", ls=[":", "-.", "--", (0, (1, 4))][j % 4],
                    label=label)
        for i, r in enumerate(shown):
            for row in ("Imprinting + Aug + calibration", *(k for k in r["rows"] if k.startswith("Imprinting+FT"))):
                per_n = r["rows"].get(row)
                if not per_n:
                    continue
                ns = [n for n in shots if per_n.get(str(n))]
                m = [_cell([x[metric] for x in per_n[str(n)]]) for n in ns]
                ax.errorbar(ns, [a for a, _ in m], yerr=[s for _, s in m], marker="o", capsize=3,
                            ls=styles[i % len(styles)], label=f"{row} — {r['name']}")
        ax.set_xscale("log")
        ax.set_xticks(list(SHOTS), [str(n) for n in SHOTS])
        ax.set_xlabel("shots per novel class (n)")
        ax.set_ylabel(f"top-1 % ({key} test images, 200-way)")
        ax.set_title(f"CUB-200-2011, {key} classes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(out / f"cub_{key}.png", dpi=120)
        plt.close(fig)


def _plot_fig6(out: Path, results: list[dict], shots: list[int]) -> None:
    """Figure 6: averaged imprinting against nearest neighbour over the stored shots, novel classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r["format"] == "onnx" and r["precision"] == "int8"
             and "Nearest shot (Fig. 6)" in r["rows"]]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
    for ax, r in zip(axes[0], shown):
        x = np.arange(len(shots))
        for k, row in enumerate(("Imprinting", "Nearest shot (Fig. 6)")):
            m = [_cell([v[0] for v in r["rows"][row][str(n)]]) for n in shots]
            ax.bar(x + (k - 0.5) * 0.38, [a for a, _ in m], 0.38, yerr=[e for _, e in m], capsize=3,
                   label="averaged imprinting" if k == 0 else "nearest shot")
        ax.set_xticks(x, [f"n={n}" for n in shots])
        ax.set_ylabel("novel top-1 % (200-way)")
        ax.set_title(r["name"], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Figure 6: averaging the shots against nearest neighbour over them")
    fig.tight_layout()
    fig.savefig(out / "cub_fig6.png", dpi=110)
    plt.close(fig)
