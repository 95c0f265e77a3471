"""Commands that answer from a state: classify and status."""

from __future__ import annotations

from typing import Any

import typer

from edgecl.cli.base import AsJson, StateDir, handles_errors, print_json


@handles_errors
def classify(
    images: list[str] = typer.Argument(..., help="Image files and/or folders (walked)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Candidates listed per image."),
    labels: str = typer.Option(
        "",
        help="Extra labels, comma-separated, never learned: scored zero-shot on the same "
        "probability scale as the learned classes, for images unlike any learned class.",
    ),
    min_confidence: float | None = typer.Option(
        None,
        "--min-confidence",
        min=0.0,
        max=1.0,
        help="Answer `unknown` below this confidence (0: never). Default: the state's device profile's "
        "min_confidence (0.45 in the shipped profiles).",
    ),
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Classify images with what was learned (no torch on this path).

    IMAGES: image files and/or folders (walked; hidden and system folders skipped). Each image gets an answer: a
    learned class (or a --labels label) with a calibrated confidence, or `unknown` when the confidence is below
    --min-confidence (an image unlike everything learned).

    Examples:

        edgecl classify photo.jpg
        edgecl classify ./camera/ --json --top-k 3
        edgecl classify cat.jpg --labels "cat,dog,rocket" --min-confidence 0.6
    """
    from edgecl.commands import classify as run_classify
    from edgecl.tasks import MISSING

    results, skipped = run_classify(images, state_dir, top_k, labels.split(","), min_confidence=min_confidence)
    for item in skipped:
        typer.echo(f"warning: skipped {item['path']}: {item['reason']}", err=True)
    if as_json:
        print_json(results)
    else:
        for row in results:
            typer.echo(f"{row['image']}: {answer_line(row)}")
    if any(item["reason"] == MISSING for item in skipped):  # the others were answered; the exit status says not all
        raise typer.Exit(1)


def answer_line(row: dict[str, Any]) -> str:
    """`sneaker 87% (bag 5%, ...)` or `unknown (closest: sneaker 41%)`."""
    best, *others = row["predictions"]
    if row["unknown"]:
        return f"unknown (closest: {best['label']} {100 * best['probability']:.0f}%)"
    rest = ", ".join(f"{p['label']} {100 * p['probability']:.0f}%" for p in others)
    return f"{row['label']} {100 * row['confidence']:.0f}%" + (f" (then {rest})" if rest else "")


@handles_errors
def status(
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Show the backbone, classes, domains, memory use and task history of a state.

    Reads the state only (safe while a learn or a server runs).

    Examples:

        edgecl status
        edgecl status --state-dir ~/cam-1 --json
    """
    from edgecl.commands import status as run_status
    from edgecl.units import format_bytes

    info = run_status(state_dir)
    if as_json:
        print_json(info.to_json())
        return
    mem = info.memory
    typer.echo(f"backbone {info.backbone}, device {info.device}, method {info.method}")
    typer.echo(f"classes ({len(info.classes)}): {', '.join(info.classes)}")
    if info.domains:
        in_order = dict.fromkeys(task.get("domain") or "" for task in info.tasks)  # learned order, unnamed too
        typer.echo(f"domains: {', '.join(d or '(none: tasks without --domain)' for d in in_order)}")
    per_class = ", ".join(f"{k} {v}" for k, v in mem.per_class.items())
    used = f"{format_bytes(mem.bytes)} of {format_bytes(mem.budget_bytes)}"
    typer.echo(f"memory: {mem.samples} samples, {used} ({mem.codec}); per class: {per_class}")
    for i, task in enumerate(info.tasks, 1):
        typer.echo(f"task {i}: {task['samples']} images, classes {', '.join(task['classes'])}"
                   + (f", domain {task['domain']}" if task.get("domain") else ""))  # fmt: skip
