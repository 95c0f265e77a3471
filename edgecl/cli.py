"""The `edgecl` command line: each command parses flags, makes one edgecl call and prints its report."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

try:  # typer 0.21+ carries its own copy of click (flwr 1.42 pins typer < 0.21, so click itself is used)
    from typer._click import exceptions as usage
except ImportError:
    from click import exceptions as usage  # type: ignore[no-redef]

from edgecl.errors import EdgeclError
from edgecl.learn.methods import DEFAULT_GROUPS, DEFAULT_METHOD, METHODS
from edgecl.memory.policy import GROUPINGS

if TYPE_CHECKING:
    from edgecl.reports import Batches

METHOD_NAMES = ", ".join(METHODS)

# Options that several commands share, declared once.
StateDir = Annotated[str | None, typer.Option(help="State directory. Default: $EDGECL_HOME or ~/.edgecl.")]
WaitSeconds = Annotated[float, typer.Option(min=0.0, help="Seconds to wait for another edgecl process writing the same "
                                            "state (0: do not wait).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON (docs/usage.md: JSON contracts).")]
DeviceName = Annotated[str | None, typer.Option(help="Device profile (see `edgecl devices`; default cpu).")]
ProfileFile = Annotated[str | None, typer.Option(help="Your own device profile TOML instead of --device.")]

app = typer.Typer(
    help="On-device continual learning for CLIP within a byte budget.",
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width; examples are code blocks
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
F = TypeVar("F", bound=Callable[..., Any])


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def handles_errors(fn: F) -> F:
    """Turn EdgeclError into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeclError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _show_version(value: bool) -> None:
    if value:
        import edgecl

        typer.echo(f"edgecl {edgecl.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:  # third-party warnings (bitsandbytes via peft, onnxruntime's shape inference) stay off stderr
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ours_or_errors)
        warnings.simplefilter("ignore")


def _ours_or_errors(record: logging.LogRecord) -> bool:
    """Our own warnings (edgecl, and the exporter `export`) and everyone's errors reach the terminal; other libraries'
    warnings need --verbose."""
    return record.levelno >= logging.ERROR or record.name.split(".")[0] in ("edgecl", "export")


@app.command()
@handles_errors
def export(
    backbone: str = typer.Option("bundled", help="'bundled' (offline) or 'openclip:<arch>[:<tag | checkpoint>]'."),
    out: Path | None = typer.Option(None, help="Model directory to write. Default: $EDGECL_HOME/models/<id>."),
    keep_fp32: bool = typer.Option(False, "--keep-fp32", help="Also keep the fp32 ONNX towers (for comparison)."),
    calibration_dir: Path | None = typer.Option(None, help="Folder of images like yours, for INT8 calibration."),
    image_recipe: str | None = typer.Option(None, help="Force an image quantisation recipe (docs/quantisation.md)."),
    text_recipe: str | None = typer.Option(None, help="Force a text quantisation recipe (see docs/quantisation.md)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different export."),
    as_json: AsJson = False,
) -> None:
    """Export a CLIP backbone to INT8 ONNX image and text towers."""
    from edgecl.model_dir import read_manifest  # noqa: F401  (fails fast on a broken install)
    from edgecl.paths import default_model_dir
    from export import ExportOptions, export_model

    options = ExportOptions(keep_fp32, str(calibration_dir) if calibration_dir else None, image_recipe, text_recipe)
    target = out or default_model_dir(backbone)
    console = _stderr()
    with console.status("exporting") as status:
        manifest = export_model(backbone, target, options, force, progress=lambda m: status.update(m))
    if as_json:
        _print_json(manifest.data)
        return
    for name in ("image", "text"):
        q = manifest.tower(name)["quantization"]
        chosen = next(t for t in q["tried"] if t["recipe"]["name"] == q["chosen"])
        agreement = f", zero-shot agreement {100 * chosen['agreement']:.1f}%" if "agreement" in chosen else ""
        console.print(f"{name} tower: INT8 recipe {q['chosen']}, cosine to fp32 {chosen['cosine_mean']:.4f}{agreement}")
    console.print(f"model directory: {manifest.root}")


@app.command()
@handles_errors
def backbones(as_json: AsJson = False) -> None:
    """List the backbones edgecl can export and whether each needs a download."""
    from edgecl.backbones import list_backbones

    rows = list_backbones()
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        where = "download" if row["needs_download"] else "offline"
        state = {True: "ready", False: "not installed", None: ""}[row["available"]]
        typer.echo(f"{row['id']:<44} {where:<9} {state:<14} {row['description']}")
        if row["note"] and row["available"] is False:
            typer.echo(f"{'':<44} {row['note']}")


@app.command()
@handles_errors
def demo(
    state_dir: str | None = typer.Option(None, help="Keep the demo's state here (default: a temporary folder)."),
    train_per_class: int = typer.Option(100, min=1, help="Training images per class."),
    test_per_class: int = typer.Option(100, min=1, help="Held-out images per class."),
    method: str = typer.Option(DEFAULT_METHOD, help=f"{METHOD_NAMES} (see docs/method.md)."),
    as_json: AsJson = False,
) -> None:
    """Offline demo: learn Fashion-MNIST in 5 tasks of 2 classes, accuracy after each task, final status."""
    from edgecl.demo import DEMO_BUDGET, run_demo
    from edgecl.units import format_bytes

    def show(row: dict[str, Any]) -> None:
        if not as_json:
            seen, first = 100 * row["accuracy_seen"], 100 * row["accuracy_first_task"]
            memory = f"{format_bytes(row['memory_bytes'])} ({row['codec']})"
            typer.echo(
                f"task {row['task']}: learned {', '.join(row['new_classes'])}; accuracy on all seen classes "
                f"{seen:.1f}%, on task 1's classes {first:.1f}%; memory {memory}; {row['seconds']:.1f} s"
            )

    if not as_json:
        typer.echo(f"Fashion-MNIST, 5 tasks x 2 classes, {train_per_class} images per class, budget {DEMO_BUDGET}, "
                   f"method {method}, bundled offline backbone")  # fmt: skip
    with _Bar(not as_json) as bar:
        results = run_demo(state_dir, train_per_class, test_per_class, method, show, bar)
    if as_json:
        _print_json(results)
        return
    info = results["status"]
    used = f"{format_bytes(info['memory']['bytes'])} of {format_bytes(info['memory']['budget_bytes'])}"
    typer.echo(f"\nfinal state: {len(info['classes'])} classes, {info['memory']['samples']} samples in memory, {used}")
    typer.echo(results["note"])


class _Bar:
    """A rich progress bar on stderr driven by (stage, done, total) callbacks; a spinner for stages without totals."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,  # fmt: skip
            TimeRemainingColumn,
        )

        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("left"),
        )
        console = _stderr()  # not a terminal (a pipe, a log file): no bar, and no blank line where it was
        self.progress = Progress(*columns, console=console, disable=not (enabled and console.is_terminal),
                                 transient=True)  # fmt: skip
        self.tasks: dict[str, Any] = {}
        self.totals: dict[str, int] = {}
        # no bar (a pipe, a log file) but --verbose: one log line as each stage starts and ends instead
        self.lines = self.progress.disable and logging.getLogger().isEnabledFor(logging.INFO)
        self.started, self.done = time.monotonic(), set()

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done < 0:  # a notice: one line that stays, also under --json (stderr)
            self.progress.console.print(stage, markup=False, highlight=False, soft_wrap=True)
            return
        if stage not in self.tasks:
            for name, task_id in self.tasks.items():  # a stage without a total ends when the next one starts
                if not self.totals[name]:
                    self.progress.update(task_id, total=1, completed=1)
            self.tasks[stage] = self.progress.add_task(stage, total=total or None)
            self._line(f"{stage}{f' ({total})' if total else ''}")
        elif total and done == total and stage not in self.done:
            self.done.add(stage)
            self._line(f"{stage}: {done}/{total} done")
        self.totals[stage] = total
        self.progress.update(self.tasks[stage], completed=done, total=total or None)


    def _line(self, message: str) -> None:
        if self.lines:
            logging.getLogger("edgecl.progress").info("%s [%.1f s]", message, time.monotonic() - self.started)


def _wait_message(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
@handles_errors
def learn(
    task_dir: Path = typer.Option(..., "--task-dir", help="Folder with one sub-folder of images per class."),
    budget: str | None = typer.Option(
        None, help="Replay-memory budget, e.g. 8MB, 512KiB (first learn; default: the device profile's, 8MB for cpu; "
        "see `edgecl devices`)."
    ),
    state_dir: StateDir = None,
    domain: str | None = typer.Option(None, help="Name of the visual domain of these images (domain-incremental)."),
    method: str | None = typer.Option(None, help=f"{METHOD_NAMES} (default {DEFAULT_METHOD})."),
    backbone: str | None = typer.Option(
        None,
        help="Backbone id (first learn): auto (default: the profile's CLIP when its weights can be had, else "
        "bundled), bundled, or openclip:<arch>[:<tag | checkpoint>].",
    ),
    device: DeviceName = None,
    profile_file: ProfileFile = None,
    force: bool = typer.Option(False, "--force", help="Allow a --budget above the profile's maximum."),
    codec: str | None = typer.Option(None, help="Memory codec: auto (default), fp16, int8, int4 or pq."),
    groups: str | None = typer.Option(
        None, help=f"What the memory balances and gdro weighs: {', '.join(GROUPINGS)} (default {DEFAULT_GROUPS})."
    ),
    seed: int | None = typer.Option(None, min=0, help="Random seed (memory selection, training) of a new state "
                                    "(default 0); a later learn keeps the state's and refuses another."),
    wait: WaitSeconds = 300.0,
    as_json: AsJson = False,
) -> None:
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
    with _Bar(not as_json) as bar:
        report = run_learn(opts, bar, _wait_message)
    if as_json:
        _print_json(report.to_json())
        return
    from edgecl.units import format_bytes

    in_all = f"{_count(len(report.classes), 'class', 'classes')} in all"
    where = f" in domain {report.domain!r}" if report.domain else ""
    if not report.samples_learned:
        typer.echo(f"nothing new to learn: {_count(report.already_learned, 'photo was', 'photos were')} learned "
                   f"before as the same classes{where}; {in_all}, nothing changed")  # fmt: skip
        return
    if report.new_classes:
        typer.echo(f"learned {_count(len(report.new_classes), 'new class', 'new classes')} "
                   f"({', '.join(report.new_classes)}); {in_all}")  # fmt: skip
    else:
        typer.echo(f"learned {_count(report.samples_learned, 'photo', 'photos')} of known classes{where}; {in_all}")
    if report.already_learned:
        typer.echo(f"skipped {_count(report.already_learned, 'photo', 'photos')} learned before as the same class")
    for given, learned in report.joined_classes.items():
        typer.echo(f"note: folder {given!r} is the learned class {learned!r} (names match ignoring case, spaces, "
                   "'_' and '-')")  # fmt: skip
    typer.echo(f"memory: {report.samples_stored} samples, {format_bytes(report.memory_bytes)} of "
               f"{format_bytes(report.budget_bytes)} ({report.codec}); {report.seconds:.1f} s")  # fmt: skip
    _echo_validation(report.validation)
    for item in report.skipped:
        typer.echo(f"skipped {item['path']}: {item['reason']}", err=True)
    _warn_ram_limits(report.batches)


def _count(n: int, one: str, many: str) -> str:
    """'1 photo', '3 photos'."""
    return f"{n} {one if n == 1 else many}"


def _echo_validation(validation: dict[str, Any] | None) -> None:
    """`held out: bag 100%, sneaker 95%` and a hint line per class that needs more photos."""
    if not validation or not validation["per_class"]:
        return
    per_class = ", ".join(f"{name} {100 * v['accuracy']:.0f}%" for name, v in validation["per_class"].items())
    typer.echo(f"held-out estimate ({validation['estimate']}): {per_class}")
    for hint in validation["hints"]:
        typer.echo(f"hint: {hint}")


def _warn_ram_limits(batches: Batches) -> None:
    """Say when the profile's RAM cap shrank what learning did."""
    encode = batches.encode
    if encode["limited_by_ram_cap"]:
        typer.echo(f"note: encoded in batches of up to {max(encode['sizes_used'])} (profile: {encode['max']}) "
                   "to stay under the RAM cap", err=True)  # fmt: skip
    if (batches.replayed_rows or 0) < (batches.replay_rows_available or 0):
        typer.echo(f"warning: the RAM cap let training replay {batches.replayed_rows} of "
                   f"{batches.replay_rows_available} memory samples; old classes may be forgotten faster",
                   err=True)  # fmt: skip


@app.command()
@handles_errors
def classify(
    images: list[str] = typer.Argument(..., help="Image files and/or folders (walked)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Candidates listed per image."),
    labels: str = typer.Option("", help="Extra labels, comma-separated, never learned: scored zero-shot on the same "
                               "probability scale as the learned classes, for images unlike any learned class."),
    min_confidence: float | None = typer.Option(
        None, "--min-confidence", min=0.0, max=1.0,
        help="Answer `unknown` below this confidence (0: never). Default: the state's device profile's "
        "min_confidence (0.45 in the shipped profiles)."),
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
        _print_json(results)
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


@app.command()
@handles_errors
def status(
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Show the backbone, classes, domains, memory use and task history of a state."""
    from edgecl.commands import status as run_status
    from edgecl.units import format_bytes

    info = run_status(state_dir)
    if as_json:
        _print_json(info.to_json())
        return
    mem = info.memory
    typer.echo(f"backbone {info.backbone}, device {info.device}, method {info.method}")
    typer.echo(f"classes ({len(info.classes)}): {', '.join(info.classes)}")
    if info.domains:
        typer.echo(f"domains: {', '.join(info.domains)}")
    per_class = ", ".join(f"{k} {v}" for k, v in mem.per_class.items())
    used = f"{format_bytes(mem.bytes)} of {format_bytes(mem.budget_bytes)}"
    typer.echo(f"memory: {mem.samples} samples, {used} ({mem.codec}); per class: {per_class}")
    for i, task in enumerate(info.tasks, 1):
        typer.echo(f"task {i}: {task['samples']} images, classes {', '.join(task['classes'])}"
                   + (f", domain {task['domain']}" if task.get("domain") else ""))  # fmt: skip


@app.command()
@handles_errors
def forget(
    class_name: str = typer.Argument(..., metavar="CLASS", help="The class to remove (case, spaces, '_' and '-' "
                                     "are ignored: 'Ankle Boot' finds ankle_boot)."),
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

    report = run_forget(class_name, state_dir, wait, _wait_message)
    if as_json:
        _print_json(report)
        return
    from edgecl.units import format_bytes

    typer.echo(f"forgot {report['forgotten']!r}: {format_bytes(report['bytes_freed'])} of memory freed; "
               f"{report['note']}")  # fmt: skip


@app.command()
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

    report = change_memory(budget, codec, state_dir, force, wait, _wait_message)
    if as_json:
        _print_json(report)
        return
    before, after = report["before"], report["after"]
    typer.echo(f"memory: {before['samples']} samples, {format_bytes(before['bytes'])} of "
               f"{format_bytes(before['budget_bytes'])} ({before['codec']}) -> {after['samples']} samples, "
               f"{format_bytes(after['bytes'])} of {format_bytes(after['budget_bytes'])} ({after['codec']}); "
               f"{report['note']}")  # fmt: skip


@app.command()
@handles_errors
def rollback(state_dir: StateDir = None, wait: WaitSeconds = 300.0, as_json: AsJson = False) -> None:
    """Go back to the state before the last learn, forget, memory change or fleet round; run it again to undo.

    Example: edgecl rollback --state-dir ~/cam-1
    """
    from edgecl.commands import rollback as run_rollback

    report = run_rollback(state_dir, wait, _wait_message)
    if as_json:
        _print_json(report)
        return
    classes = ", ".join(report["classes"]) or "none"
    typer.echo(f"rolled back to snapshot {report['rolled_back_to']} ({report['tasks']} task(s); classes {classes}); "
               f"{report['note']}")  # fmt: skip


@app.command()
@handles_errors
def bench(
    suite: str = typer.Option(
        "quick",
        help="quick (about 2 min on 2 cores once embeddings are cached), default (3 seeds, sweeps), task-size "
        "(images per class x classes per task, and a budget sweep at 100 images per class), open-set (known vs "
        "unknown images: confidence, unknown, --labels) or methods (which default: every method on every cell of "
        "images per class, task shape and budget, class- and domain-incremental, beside full memory; about an hour).",
    ),
    out: Path = typer.Option(Path("bench-results"), help="Folder for results.json, report.md and PNG plots."),
    data_root: Path | None = typer.Option(None, help="Folder holding CIFAR-100 / DomainNet, when you have them."),
    download: bool = typer.Option(False, "--download", help="Fetch CIFAR-100 into --data-root (needs network)."),
    as_json: AsJson = False,
) -> None:
    """Continual-learning benchmark: all methods side by side at equal byte budgets (bundled backbone)."""
    from edgecl.bench.method_suite import METHOD_SUITES, method_markdown, run_method_suite
    from edgecl.bench.open_set import OPEN_SET_SUITES, open_set_markdown, run_open_set
    from edgecl.bench.size_suite import SIZE_SUITES, run_size_suite, size_markdown
    from edgecl.bench.suite import SUITES, markdown, run_suite

    named = {**{s: (run_size_suite, SIZE_SUITES[s], size_markdown) for s in SIZE_SUITES},
             **{s: (run_open_set, OPEN_SET_SUITES[s], open_set_markdown) for s in OPEN_SET_SUITES},
             **{s: (run_method_suite, METHOD_SUITES[s], method_markdown) for s in METHOD_SUITES}}  # fmt: skip
    if suite not in SUITES and suite not in named:
        raise EdgeclError(f"unknown suite {suite!r}; choose {', '.join([*SUITES, *named])}")
    with _Bar(not as_json) as bar:
        if suite in named:
            runner, config, render = named[suite]
            results = runner(config, out, suite, bar)
        else:
            results, render = run_suite(suite, out, data_root, download, bar), markdown
    if as_json:
        _print_json(results)
        return
    typer.echo(render(results))
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots in {out}")


@app.command()
@handles_errors
def serve(
    state_dir: StateDir = None,
    host: str = typer.Option("127.0.0.1", help="Address to bind; another than loopback needs --token."),
    port: int = typer.Option(8130, min=0, max=65535, help="TCP port (0: any free one; the start-up line says)."),
    token: str | None = typer.Option(None, envvar="EDGECL_TOKEN", help="Every request then needs "
                                     "`Authorization: Bearer TOKEN` (also from $EDGECL_TOKEN)."),
    max_upload: str = typer.Option("20MB", "--max-upload", help="Largest request body; bigger ones get a 413."),
    as_json: AsJson = False,
) -> None:
    """Serve classify, learn, forget and status over HTTP from one loaded state (FastAPI + uvicorn).

    Endpoints: GET /v2/health/live, GET /v2/health/ready (503 until something is learned), POST /v1/classify
    (multipart `image`, form `top_k`, `labels`, `min_confidence`), POST /v1/vision/custom/{model} (the DeepStack /
    CodeProject.AI shape Frigate and Home Assistant use), POST /v1/learn (`image` files + `label`), GET /v1/status,
    DELETE /v1/classes/{name}, GET /metrics. A learn by the CLI in another shell is served within a few seconds.

    Examples:

        edgecl serve
        curl -F image=@cat.jpg http://127.0.0.1:8130/v1/classify
        EDGECL_TOKEN=secret edgecl serve --host 0.0.0.0 --port 8130
    """
    from edgecl.serve import run
    from edgecl.units import parse_bytes

    def started(address: str, state: Any) -> None:
        if as_json:
            typer.echo(json.dumps({"address": address, "state_dir": str(state.root), "snapshot": state.snapshot,
                                   "ready": state.ready, "auth": bool(token)}))  # fmt: skip
        else:
            typer.echo(f"edgecl serving {state.root} at {address}" + ("" if state.ready else " (nothing learned yet)"))
        sys.stdout.flush()

    run(state_dir, host, port, token, parse_bytes(max_upload), started)


fleet_app = typer.Typer(help="Fleet learning on Flower: devices share what they learned, never their images.",
                        no_args_is_help=True, rich_markup_mode="markdown")  # fmt: skip
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("simulate")
@handles_errors
def fleet_simulate(
    devices: int = typer.Option(3, help="Simulated devices, each with its own state directory."),
    rounds: int = typer.Option(3, help="Federation rounds."),
    stream: str = typer.Option("fashion-mnist", help="fashion-mnist or mnist (offline)."),
    split: str = typer.Option("disjoint", help="disjoint (each class on one device) or dirichlet (shares per class)."),
    budget: str = typer.Option("64KB", help="Each device's replay-memory budget."),
    train_per_class: int = typer.Option(100, min=1, help="Training images per class, dealt out to the devices."),
    test_per_class: int = typer.Option(100, min=1, help="Test images per class."),
    seed: int = typer.Option(0, min=0, help="Seed of the split and of learning (device k learns with seed + k)."),
    keep: Path | None = typer.Option(None, help="Keep the devices' state directories here (default: temporary)."),
    as_json: AsJson = False,
) -> None:
    """Each device learns its part with `learn`'s code; then the rounds run on Flower's simulation engine."""
    from edgecl.fleet.simulate import FleetSpec, simulate

    spec = FleetSpec(devices, rounds, stream, split, budget, train_per_class, test_per_class, seed)
    with _Bar(not as_json) as bar:
        result = simulate(spec, keep, bar)
    if as_json:
        _print_json(result)
        return
    for d in result["devices"]:
        typer.echo(f"device {d['id']} (seed {d['seed']}): {len(d['local_classes'])} own classes; all classes "
                   f"{100 * d['acc_all_before']:.1f}% -> {100 * d['acc_all_after']:.1f}% (head alone "
                   f"{100 * d['acc_head_before']:.1f}% -> {100 * d['acc_head_after']:.1f}%), own "
                   f"{100 * d['acc_local_after']:.1f}%; memory {d['memory_bytes']} of "
                   f"{d['budget_bytes']} B")  # fmt: skip
    typer.echo(f"{result['rounds']} rounds, {result['bytes_up_per_round']} B up and "
               f"{result['bytes_down_per_round']} B down per round, {result['seconds']:.0f} s")  # fmt: skip


@app.command()
@handles_errors
def devices(as_json: AsJson = False) -> None:
    """List the shipped device profiles."""
    from edgecl.profiles import list_profiles

    profiles = list_profiles()
    if as_json:
        _print_json([p.to_dict() for p in profiles])
        return
    for p in profiles:
        typer.echo(f"{p.name:<18} budget {p.default_budget} (max {p.max_budget}), {p.providers[0]}: {p.description}")


@app.command()
@handles_errors
def profile(
    device: str | None = typer.Option(None, help="Device profile to measure against (default cpu)."),
    profile_file: ProfileFile = None,
    backbone: str | None = typer.Option(None, help="Backbone to measure (default: the profile's, else bundled)."),
    as_json: AsJson = False,
) -> None:
    """Measure latency, throughput and memory on this machine against a device profile's targets."""
    from edgecl.profiles import get_profile
    from edgecl.profiling import run_profile

    chosen = get_profile(device, profile_file)
    with _stderr().status("profiling") as spinner:
        report = run_profile(chosen, backbone, lambda m: spinner.update(m))
    if as_json:
        _print_json(report)
        return
    typer.echo(f"device {report['device']}, backbone {report['backbone']}, provider {report['provider_used']}")
    if report["backbone_note"]:
        typer.echo(f"note: {report['backbone_note']}")
    b1, bb, c = report["encoder_batch1"], report["encoder_batch"], report["classify"]
    typer.echo(f"encoder batch 1: p50 {b1['p50_ms']} ms, p95 {b1['p95_ms']} ms; "
               f"batch {bb['batch']}: p50 {bb['p50_ms']} ms, p95 {bb['p95_ms']} ms")  # fmt: skip
    typer.echo(f"classify end to end: p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms")
    learn_info, mem = report["learn"], report["memory"]
    typer.echo(f"learn: {learn_info['images_per_s']} images/s for a {learn_info['task_images']}-photo learn (encoding "
               f"+ training; encoder alone {learn_info['encode_images_per_s']} images/s), "
               f"{learn_info['train_steps_per_s']} train steps/s")  # fmt: skip
    typer.echo(f"memory entry: {mem['bytes_per_entry']} B ({mem['codec']}), {mem['entries_in_default_budget']} fit")
    typer.echo(f"peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB; GPU {report['gpu'] or 'none'}")
    typer.echo(f"note: {report['verdicts_note']}")
    for check in report["checks"]:
        typer.echo(
            f"{'PASS' if check['pass'] else 'FAIL'}  {check['name']}: {check['value']} (target {check['target']})"
        )


def _said_once(message: str) -> str:
    """Click and typer both append "Did you mean 'x'?" to an unknown command: keep each sentence once."""
    import re

    return " ".join(dict.fromkeys(re.split(r"(?<=[.?!])\s+", message.strip())))


def main() -> None:
    """Console-script entry point."""
    from edgecl.ram import count_whole_process

    count_whole_process()
    try:
        code = app(prog_name="edgecl", standalone_mode=False)
    except EdgeclError as exc:  # errors raised outside a command body (e.g. in callbacks)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except usage.NoArgsIsHelpError as exc:  # a bare `edgecl` or group: the help text
        exc.show()
        sys.exit(exc.exit_code)
    except usage.UsageError as exc:  # a missing or bad option: one line, like every other error
        where = exc.ctx.command_path if exc.ctx else "edgecl"
        typer.echo(f"error: {_said_once(exc.format_message())} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except usage.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
