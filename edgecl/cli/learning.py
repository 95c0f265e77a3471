"""Commands that change what a state knows: learn, forget, memory (budget and codec), rollback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgecl.cli.base import (
    METHODS_TEXT,
    AsJson,
    DeviceName,
    ProfileFile,
    StateDir,
    WaitSeconds,
    count,
    handles_errors,
    print_json,
    wait_message,
)
from edgecl.cli.progress import ProgressBar
from edgecl.learn.methods import DEFAULT_GROUPS, DEFAULT_METHOD
from edgecl.memory.groups import GROUPINGS

if TYPE_CHECKING:
    from edgecl.reports import Batches, LearnReport


# learn's own options (the signature stays one line per option)
TaskDir = Annotated[Path, typer.Option("--task-dir", help="Folder with one sub-folder of images per class.")]
Budget = Annotated[str | None, typer.Option(help="Replay-memory budget, e.g. 8MB, 512KiB (first learn; default: the "
                                            "device profile's, 8MB for cpu; see `edgecl devices`).")]
Domain = Annotated[str | None, typer.Option(help="Name of the visual domain of these images (domain-incremental).")]
MethodName = Annotated[str | None, typer.Option(help=f"{METHODS_TEXT} (default {DEFAULT_METHOD}).")]
Backbone = Annotated[str | None, typer.Option(help="Backbone id (first learn): auto (default: the profile's CLIP when "
                                              "its weights can be had, else bundled), bundled, or "
                                              "`openclip:<arch>[:<tag | checkpoint>]`.")]
Force = Annotated[bool, typer.Option("--force", help="Allow a --budget above the profile's maximum.")]
Codec = Annotated[str | None, typer.Option(help="Memory codec: auto (default), fp16, int8, int4 or pq.")]
Groups = Annotated[str | None, typer.Option(help=f"What the memory balances and gdro weighs: {', '.join(GROUPINGS)} "
                                            f"(default {DEFAULT_GROUPS}).")]
Seed = Annotated[int | None, typer.Option(min=0, help="Random seed (memory selection, training) of a new state "
                                          "(default 0); a later learn keeps the state's and refuses another.")]


@handles_errors
def learn(task_dir: TaskDir, budget: Budget = None, state_dir: StateDir = None, domain: Domain = None,
          method: MethodName = None, backbone: Backbone = None, device: DeviceName = None,
          profile_file: ProfileFile = None, force: Force = False, codec: Codec = None, groups: Groups = None,
          seed: Seed = None, wait: WaitSeconds = 300.0, as_json: AsJson = False) -> None:  # fmt: skip
    """Learn a task: new classes, or known classes in a new --domain.

    --task-dir holds one sub-folder per class, and the folder name is the class name (task/cat/1.jpg,
    task/dog/2.heic); images may be nested. A folder naming a learned class (any case, '_' or '-' for spaces) adds to
    it; photos learned before are skipped. The first learn creates the state (and builds the backbone once); later
    learns keep its budget, method, codec and seed.

    Methods: er_cb (default) replay with class-balanced cross-entropy; er replay with cross-entropy; gdro GCL with
    DRO class weights (the paper's); gdro_ce replay cross-entropy with DRO weights; gcl global contrastive loss;
    ncm class means only (no training, fastest); finetune no memory; zeroshot class names only.
    Codecs (how the memory stores a sample): auto (default: the most precise that fits), fp16, int8, int4, pq
    (product quantisation, the smallest). Groups (what gets equal memory shares and DRO weights): class_domain
    (default: each class in each domain), class, domain.

    Examples:

        edgecl learn --task-dir ./new_photos --budget 8MB
        edgecl learn --task-dir ./more_photos
        edgecl learn --task-dir ./night_photos --domain night
        edgecl learn --task-dir ./photos --method ncm --budget 256KB --state-dir ~/cam-1 --json
    """
    from edgecl.commands import LearnOptions
    from edgecl.commands import learn as run_learn

    opts = LearnOptions(task_dir=str(task_dir), budget=budget, state_dir=state_dir, domain=domain, method=method,
                        backbone=backbone, device=device, codec=codec, seed=seed, lock_timeout_s=wait,
                        profile_file=profile_file, force=force, groups=groups)  # fmt: skip
    with ProgressBar(not as_json) as bar:
        report = run_learn(opts, bar, wait_message)
    if as_json:
        print_json(report.to_json())
        warn_ram_limits(report.batches)  # on stderr, as the plain report says them
    else:
        echo_learned(report)


def echo_learned(report: LearnReport) -> None:
    """The text report of a learn: what was learned, skipped and joined, the memory, the held-out estimate."""
    from edgecl.units import format_bytes

    in_all = f"{count(len(report.classes), 'class', 'classes')} in all"
    where = f" in domain {report.domain!r}" if report.domain else ""
    if not report.samples_learned:
        typer.echo(f"nothing new to learn: {count(report.already_learned, 'photo was', 'photos were')} learned "
                   f"before as the same classes{where}; {in_all}, nothing changed")  # fmt: skip
        return
    if report.new_classes:
        typer.echo(f"learned {count(len(report.new_classes), 'new class', 'new classes')} "
                   f"({', '.join(report.new_classes)}); {in_all}")  # fmt: skip
    else:
        typer.echo(f"learned {count(report.samples_learned, 'photo', 'photos')} of known classes{where}; {in_all}")
    if report.already_learned:
        typer.echo(f"skipped {count(report.already_learned, 'photo', 'photos')} learned before as the same class")
    for given, learned in report.joined_classes.items():
        typer.echo(f"note: folder {given!r} is the learned class {learned!r} (names match ignoring case, spaces, "
                   "'_' and '-')")  # fmt: skip
    typer.echo(f"memory: {report.samples_stored} samples, {format_bytes(report.memory_bytes)} of "
               f"{format_bytes(report.budget_bytes)} ({report.codec}); {report.seconds:.1f} s")  # fmt: skip
    echo_validation(report.validation)
    for item in report.skipped:
        typer.echo(f"skipped {item['path']}: {item['reason']}", err=True)
    warn_ram_limits(report.batches)  # last, on stderr


def echo_validation(validation: dict[str, Any] | None) -> None:
    """`held out: bag 100%, sneaker 95%` and a hint line per class that needs more photos."""
    if not validation or not validation["per_class"]:
        return
    per_class = ", ".join(f"{name} {100 * v['accuracy']:.0f}%" for name, v in validation["per_class"].items())
    typer.echo(f"held-out estimate ({validation['estimate']}): {per_class}")
    for hint in validation["hints"]:
        typer.echo(f"hint: {hint}")


def warn_ram_limits(batches: Batches) -> None:
    """Say on stderr when the profile's RAM cap shrank what learning did: the encode batches (a note), the rows
    replayed for earlier classes (one warning line naming each cut: memory rows, translated rows)."""
    encode = batches.encode
    if encode["limited_by_ram_cap"]:
        typer.echo(f"note: encoded in batches of up to {max(encode['sizes_used'])} (profile: {encode['max']}) "
                   "to stay under the RAM cap", err=True)  # fmt: skip
    cuts = []
    if (batches.replayed_rows or 0) < (batches.replay_rows_available or 0):
        cuts.append(f"replay {batches.replayed_rows} of {batches.replay_rows_available} memory samples")
    if (batches.translated_rows or 0) < (batches.translated_rows_available or 0):
        cuts.append(f"make {batches.translated_rows} of the {batches.translated_rows_available} translated rows the "
                    "earlier classes lacked")
    if cuts:
        typer.echo(f"warning: the RAM cap let training {' and '.join(cuts)}; old classes may be forgotten faster",
                   err=True)  # fmt: skip


@handles_errors
def forget(
    class_name: str = typer.Argument(
        ...,
        metavar="CLASS",
        help="The class to remove (case, spaces, '_' and '-' are ignored: 'Ankle Boot' finds ankle_boot).",
    ),
    state_dir: StateDir = None,
    wait: WaitSeconds = 300.0,
    as_json: AsJson = False,
) -> None:
    """Remove a class from memory and from classification.

    CLASS: the class to remove; case, spaces, '_' and '-' are ignored ('Ankle Boot' finds ankle_boot). The adapters
    keep what the class taught them until later learns retrain them; `edgecl rollback` brings the class back.

    Example: edgecl forget "ankle boot" --state-dir ~/cam-1
    """
    from edgecl.commands import forget as run_forget

    report = run_forget(class_name, state_dir, wait, wait_message)
    if as_json:
        print_json(report)
        return
    from edgecl.units import format_bytes

    typer.echo(f"forgot {report['forgotten']!r}: {format_bytes(report['bytes_freed'])} of memory freed; "
               f"{report['note']}")  # fmt: skip


@handles_errors
def memory(
    budget: str | None = typer.Option(None, help="The new replay-memory budget, e.g. 256KB, 8MB."),
    codec: str | None = typer.Option(None, help="The new memory codec: auto, fp16, int8, int4 or pq."),
    state_dir: StateDir = None,
    force: bool = typer.Option(False, "--force", help="Allow a --budget above the profile's maximum."),
    wait: WaitSeconds = 300.0,
    as_json: AsJson = False,
) -> None:
    """Change a state's replay-memory budget or codec, keeping what was learned (its stored samples re-encoded).

    The way out when a learn says the budget cannot hold one sample per class. A smaller budget keeps fewer
    samples per class; precision already lost to a smaller codec is not regained. `edgecl rollback` undoes it.

    Examples: edgecl memory --budget 256KB;  edgecl memory --codec int4
    """
    from edgecl.commands import change_memory
    from edgecl.units import format_bytes

    report = change_memory(budget, codec, state_dir, force, wait, wait_message)
    if as_json:
        print_json(report)
        return
    before, after = report["before"], report["after"]
    typer.echo(f"memory: {before['samples']} samples, {format_bytes(before['bytes'])} of "
               f"{format_bytes(before['budget_bytes'])} ({before['codec']}) -> {after['samples']} samples, "
               f"{format_bytes(after['bytes'])} of {format_bytes(after['budget_bytes'])} ({after['codec']}); "
               f"{report['note']}")  # fmt: skip


@handles_errors
def rollback(state_dir: StateDir = None, wait: WaitSeconds = 300.0, as_json: AsJson = False) -> None:
    """Go back to the state before the last learn, forget, memory change or fleet round; run it again to undo.

    Example: edgecl rollback --state-dir ~/cam-1
    """
    from edgecl.commands import rollback as run_rollback

    report = run_rollback(state_dir, wait, wait_message)
    if as_json:
        print_json(report)
        return
    classes = ", ".join(report["classes"]) or "none"
    typer.echo(f"rolled back to snapshot {report['rolled_back_to']} ({report['tasks']} task(s); classes {classes}); "
               f"{report['note']}")  # fmt: skip
