"""The open-set suite's reports from its results: report.md (every cell) and summary.md (each pair of data sets,
mean over its cells, and the figures over every cell: what docs/answers.md includes)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from edgecl.bench.open_set import SCORE_TITLES, SCORES
from edgecl.units import parse_bytes


def _mean(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.mean(values)


def _threshold_cells(rs: list[dict[str, Any]]) -> list[str]:
    """Known kept, near rejected, far rejected, accuracy all / accepted, ECE (MSP), extra label answered / top /
    zero-shot: the product at its default threshold and with `--labels`, mean over the runs."""
    t, v = "at_threshold", "labels"
    return [f"{100 * _mean(rs, t, 'known_accepted'):.1f}", f"{100 * _mean(rs, t, 'near_rejected'):.1f}",
            f"{100 * _mean(rs, t, 'far_rejected'):.1f}",
            f"{100 * _mean(rs, t, 'accuracy'):.1f} / {100 * _mean(rs, t, 'accepted_accuracy'):.1f}",
            f"{_mean(rs, t, 'ece'):.3f} ({_mean(rs, t, 'ece_msp'):.3f})",
            f"{100 * _mean(rs, v, 'extra_answer'):.1f} / {100 * _mean(rs, v, 'extra_top'):.1f} / "
            f"{100 * _mean(rs, v, 'zero_shot'):.1f}"]  # fmt: skip


def _known_accuracy_with_labels(rs: list[dict[str, Any]]) -> tuple[float, float]:
    """Known accuracy (%) with the unlearned classes' names given as `--labels`, and without."""
    return 100 * _mean(rs, "labels", "known_accuracy_with_labels"), 100 * _mean(rs, "labels", "known_accuracy")


def open_set_markdown(results: dict[str, Any]) -> str:
    cfg, runs = results["config"], results["runs"]
    lines = [f"# edgecl bench — suite `{results['suite']}`", "",
             f"Bundled backbone, method {cfg['method']}; {cfg['learned_classes']} of 10 classes learned in tasks of "
             f"{cfg['classes_per_task']}, the other {10 - cfg['learned_classes']} are near unknowns; {cfg['seeds']} "
             f"seeds; default threshold {cfg['min_confidence']}; mean over seeds; {results['seconds']:.0f} s.", "",
             "AUROC near / far (FPR at 95% TPR near / far), per score:", "",
             "| learned vs far | images/class | budget | " + " | ".join(SCORES) + " |",
             "|---|---|---|" + "---|" * len(SCORES)]  # fmt: skip
    cells = sorted({(r["known"], r["far"], r["per_class"], parse_bytes(r["budget"]), r["budget"]) for r in runs})
    groups = [(c, [r for r in runs if (r["known"], r["far"], r["per_class"], r["budget"]) == (c[0], c[1], c[2], c[4])])
              for c in cells]  # fmt: skip
    for (known, far, per_class, _, budget), rs in groups:
        row = [f"{_mean(rs, s, 'auroc_near'):.2f} / {_mean(rs, s, 'auroc_far'):.2f} "
               f"({_mean(rs, s, 'fpr95_near'):.2f} / {_mean(rs, s, 'fpr95_far'):.2f})" for s in SCORES]  # fmt: skip
        lines.append(f"| {known} vs {far} | {per_class} | {budget} | " + " | ".join(row) + " |")
    lines += ["", "The product at its default threshold, and `--labels` with the unlearned classes' names:", "",
              "| learned vs far | images/class | budget | known kept | near rejected | far rejected | accuracy: all "
              "/ accepted | ECE confidence (MSP) | extra label answered / top / zero-shot | known acc with labels |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (known, far, per_class, _, budget), rs in groups:
        with_labels, without = _known_accuracy_with_labels(rs)
        cells = [*_threshold_cells(rs), f"{with_labels:.1f} (without {without:.1f})"]
        lines.append(f"| {known} vs {far} | {per_class} | {budget} | " + " | ".join(cells) + " |")
    lines += ["", "Over every cell:", ""] + [f"- {line}" for line in summary_lines(runs)]
    return "\n".join(lines) + "\n"


def summary_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Means over every run, and the worst cell, of the figures the acceptance names."""
    t, v = "at_threshold", "labels"
    return [
        f"confidence AUROC near {_mean(runs, 'confidence', 'auroc_near'):.3f}, "
        f"far {_mean(runs, 'confidence', 'auroc_far'):.3f}"
        f" (MSP {_mean(runs, 'msp', 'auroc_near'):.3f} / {_mean(runs, 'msp', 'auroc_far'):.3f})",
        f"known kept {100 * _mean(runs, t, 'known_accepted'):.1f}%, "
        f"near rejected {100 * _mean(runs, t, 'near_rejected'):.1f}%, "
        f"far rejected {100 * _mean(runs, t, 'far_rejected'):.1f}%",
        f"accuracy on accepted known {100 * _mean(runs, t, 'accepted_accuracy'):.1f}% vs all known "
        f"{100 * _mean(runs, t, 'accuracy'):.1f}%",
        f"ECE of confidence {_mean(runs, t, 'ece'):.3f} (worst run {max(r[t]['ece'] for r in runs):.3f}; MSP "
        f"{_mean(runs, t, 'ece_msp'):.3f})",
        f"extra label answered on its images {100 * _mean(runs, v, 'extra_answer'):.1f}% (top candidate "
        f"{100 * _mean(runs, v, 'extra_top'):.1f}%) vs zero-shot among the same names "
        f"{100 * _mean(runs, v, 'zero_shot'):.1f}%",
        f"known accuracy with labels given {100 * _mean(runs, v, 'known_accuracy_with_labels'):.1f}% vs without "
        f"{100 * _mean(runs, v, 'known_accuracy'):.1f}%",
    ]  # fmt: skip


def pair_summary_markdown(results: dict[str, Any]) -> str:
    """Per pair of data sets, mean over its cells (images per class x budget x seed): AUROC near / far per score,
    the product at the default threshold and with `--labels`; then the figures over every cell."""
    runs = results["runs"]
    pairs = sorted({(r["known"], r["far"]) for r in runs})
    by_pair = [(f"{known} vs {far}", [r for r in runs if (r["known"], r["far"]) == (known, far)])
               for known, far in pairs]  # fmt: skip
    lines = ["| learned vs far | " + " | ".join(SCORE_TITLES[s] for s in SCORES) + " |",
             "|---|" + "---|" * len(SCORES)]  # fmt: skip
    for pair, rs in by_pair:
        cells = [f"{_mean(rs, s, 'auroc_near'):.2f} / {_mean(rs, s, 'auroc_far'):.2f}" for s in SCORES]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines += ["", f"At the default threshold {results['config']['min_confidence']}:", "",
              "| learned vs far | known kept | near rejected | far rejected | accuracy all / accepted | ECE (MSP) | "
              "`--labels X`: X answered / X top candidate / zero-shot | known accuracy with / without `--labels X` |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for pair, rs in by_pair:
        with_labels, without = _known_accuracy_with_labels(rs)
        lines.append(f"| {pair} | " + " | ".join([*_threshold_cells(rs), f"{with_labels:.1f} / {without:.1f}"]) + " |")
    lines += ["", "Over every cell:", ""] + [f"- {line}" for line in summary_lines(runs)]
    return "\n".join(lines) + "\n"


def write_open_set_report(results: dict[str, Any], out_dir: Path) -> None:
    """results.json, report.md (every cell), summary.md (per pair) and the two plots into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "report.md").write_text(open_set_markdown(results))
    (out_dir / "summary.md").write_text(pair_summary_markdown(results))
    from edgecl.bench.plots import plot_open_set

    plot_open_set(results, out_dir)
