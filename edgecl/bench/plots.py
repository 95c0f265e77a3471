"""PNG plots of a bench run (matplotlib, headless): accuracy after each task, last accuracy vs budget, a heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecl.learn.methods import PAPER_METHOD


def plot_all(results: dict[str, Any], main: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The suite's figures: `main` are its runs at the main budget and codec (edgecl.bench.suite.main_runs)."""
    import matplotlib

    matplotlib.use("Agg")
    cfg = results["config"]
    paths = []
    for stream in sorted({r["stream"] for r in main}):
        paths.append(_per_task(stream, [r for r in main if r["stream"] == stream], out_dir))
        swept = [r for r in main if r["stream"] == stream and r["method"] == PAPER_METHOD]
        if swept:
            paths.append(_heatmap(stream, swept, out_dir))
    first = cfg["streams"][0]
    sweep = [r for r in results["runs"] if r["stream"] == first and r["codec"] == cfg["main_codec"]]
    if sweep:
        paths.append(_budget(first, sweep, out_dir))
    return paths


def _per_task(stream: str, runs: list[dict[str, Any]], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in runs}):
        curves = np.array([r["seen_accuracy"] for r in runs if r["method"] == method])
        ax.plot(range(1, curves.shape[1] + 1), 100 * curves.mean(0), marker="o", label=method)
    ax.set(xlabel="task", ylabel="accuracy on all seen classes (%)", title=f"{stream}: accuracy after each task")
    return _save_line_plot(fig, ax, out_dir / f"{stream}-accuracy-per-task.png")


def _budget(stream: str, runs: list[dict[str, Any]], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in runs}):
        budgets = sorted({r["budget_bytes"] for r in runs if r["method"] == method})
        acc = [np.mean([r["last_accuracy"] for r in runs if r["method"] == method and r["budget_bytes"] == b])
               for b in budgets]  # fmt: skip
        ax.plot(np.array(budgets) / 1000, 100 * np.array(acc), marker="o", label=method)
    ax.set_xscale("log")
    ax.set(xlabel="memory budget (KB)", ylabel="last accuracy (%)", title=f"{stream}: last accuracy vs budget")
    return _save_line_plot(fig, ax, out_dir / f"{stream}-last-accuracy-vs-budget.png")


def _save_line_plot(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heatmap(stream: str, runs: list[dict[str, Any]], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    matrix = 100 * np.mean([np.array(r["matrix"]) for r in runs], axis=0)
    masked = np.ma.masked_where(np.triu(np.ones_like(matrix), 1) > 0, matrix)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(masked, vmin=0, vmax=100, cmap="viridis")
    for (t, k), value in np.ndenumerate(matrix):
        if k <= t:
            ax.text(k, t, f"{value:.0f}", ha="center", va="center", color="white", fontsize=8)
    ax.set(xlabel="task evaluated", ylabel="after task", title=f"{stream}: {PAPER_METHOD} accuracy matrix (%)")
    ax.set_xticks(range(len(matrix)), [str(i + 1) for i in range(len(matrix))])
    ax.set_yticks(range(len(matrix)), [str(i + 1) for i in range(len(matrix))])
    fig.colorbar(image, ax=ax)
    path = out_dir / f"{stream}-{PAPER_METHOD}-accuracy-matrix.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_open_set(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """roc.png (confidence, known vs near and vs far, mean over runs) and reliability.png (confidence on known
    images against their accuracy, rows pooled over runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for kind in ("near", "far"):
        curve = np.mean([r["roc"][kind] for r in runs], axis=0)
        ax.plot(curve[:, 0], curve[:, 1], marker=".", label=f"known vs {kind}")
    roc = _square_figure(fig, ax, ("unknown images accepted (FPR)", "known images accepted (TPR)", "confidence ROC"),
                         out_dir / "roc.png")  # fmt: skip
    bins = np.array([[b["bin"], b["rows"], b["confidence"] * b["rows"], b["accuracy"] * b["rows"]]
                     for r in runs for b in r["reliability"] if b["rows"]])  # fmt: skip
    fig, ax = plt.subplots(figsize=(5, 5))
    centres = np.unique(bins[:, 0])
    rows = np.array([bins[bins[:, 0] == c, 1].sum() for c in centres])
    accuracy = np.array([bins[bins[:, 0] == c, 3].sum() for c in centres]) / rows
    confidence = np.array([bins[bins[:, 0] == c, 2].sum() for c in centres]) / rows
    ax.bar(centres, accuracy, width=0.09, alpha=0.6, label="accuracy")
    ax.plot(confidence, accuracy, marker="o", color="black", label="mean confidence → accuracy")
    reliability = _square_figure(fig, ax, ("confidence", "accuracy on known images", "reliability"),
                                 out_dir / "reliability.png")  # fmt: skip
    return [roc, reliability]


def _square_figure(fig: Any, ax: Any, titles: tuple[str, str, str], path: Path) -> Path:
    """The diagonal, the axis labels and title, the legend; saved to `path` and closed."""
    import matplotlib.pyplot as plt

    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel=titles[0], ylabel=titles[1], title=titles[2])
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
